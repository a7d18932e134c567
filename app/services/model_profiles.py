"""Model profiles: what a workspace knows about a model it may run, made from a resolved source.

A profile's facts that decide anything (the pinned commit, gated or private, whether an engine can
serve it) always come from resolving its source on the API's side, never from the request; a
person's own names for it (display name, tags, ...) are kept as given. Its status is derived when
it is read, from its own verdict and its installations.
"""

from dataclasses import dataclass

from app.auth.principal import Principal
from app.clock import Clock
from app.domain.models import ModelFacts, ModelProfile, ProfileStatus
from app.errors import NotFound
from app.ids import new_id
from app.services.activity import ActivityLog
from app.services.model_sources import ModelSources, SourceRequest, with_overrides
from app.store import Store


@dataclass(frozen=True)
class ProfileWithStatus:
    profile: ModelProfile
    status: ProfileStatus


class ModelProfiles:
    def __init__(self, store: Store, sources: ModelSources, activity: ActivityLog, clock: Clock):
        self.store = store
        self.sources = sources
        self.activity = activity
        self.clock = clock

    def create(self, principal: Principal, source: SourceRequest, *, overrides: dict,
               metadata: dict) -> ProfileWithStatus:
        facts = with_overrides(self.sources.resolve(principal.workspace_id, source, ask_endpoint=False), **overrides)
        profile = ModelProfile(profile_id=new_id("mprof"), workspace_id=principal.workspace_id, facts=facts,
                               metadata=metadata, created_at=self.clock.iso(), created_by=principal.subject_id)
        self.store.models.add_profile(profile)
        self.activity.audit(principal.workspace_id, "model.profile.create", actor=principal.subject_id,
                            target=profile.profile_id, detail={"source": facts.external_id})
        return ProfileWithStatus(profile, facts.own_status)

    def get(self, principal: Principal, profile_id: str) -> ModelProfile:
        profile = self.store.models.profile(principal.workspace_id, profile_id)
        if profile is None:
            raise NotFound(f"no model profile {profile_id}")
        return profile

    def with_status(self, principal: Principal, profile_id: str) -> ProfileWithStatus:
        profile = self.get(principal, profile_id)
        return ProfileWithStatus(profile, profile.status(self.store.models.installations(principal.workspace_id)))

    def list(self, principal: Principal) -> list[ProfileWithStatus]:
        installations = self.store.models.installations(principal.workspace_id)
        return [ProfileWithStatus(profile, profile.status(installations))
                for profile in self.store.models.profiles(principal.workspace_id)]

    def preview(self, principal: Principal, source: SourceRequest) -> ModelFacts:
        """What a profile of `source` would be, without storing it."""
        return self.sources.resolve(principal.workspace_id, source)
