"""Envelope encryption with the KMS key (app.services.secrets) against moto's KMS: a sealed secret
opens only for its kind and workspace, tampering is caught, and a burst of seals costs one KMS call."""

import pytest

from app import composition
from app.services.secrets import SecretBox, SecretUnreadable


class CountingKms:
    def __init__(self, kms):
        self.kms = kms
        self.generated = 0
        self.decrypted = 0

    def generate_data_key(self, context):
        self.generated += 1
        return self.kms.generate_data_key(context)

    def decrypt_data_key(self, ciphertext, context):
        self.decrypted += 1
        return self.kms.decrypt_data_key(ciphertext, context)


@pytest.fixture
def box(aws_resources):
    return composition.services().secrets


def test_a_sealed_secret_opens_for_its_kind_and_workspace_and_shows_nothing(box):
    sealed = box.seal({"API_TOKEN": "sk-live-123"}, kind="job-env", workspace_id="ws_a")
    assert "sk-live-123" not in sealed
    assert box.open(sealed, kind="job-env", workspace_id="ws_a") == {"API_TOKEN": "sk-live-123"}


@pytest.mark.parametrize(("kind", "workspace_id"), [("job-env", "ws_b"), ("provider", "ws_a")])
def test_a_sealed_secret_does_not_open_in_another_context(aws_resources, kind, workspace_id):
    sealed = composition.services().secrets.seal("hf_secret", kind="job-env", workspace_id="ws_a")
    fresh = SecretBox(composition.services().kms, composition.services().clock)  # no key cached
    with pytest.raises(SecretUnreadable):
        fresh.open(sealed, kind=kind, workspace_id=workspace_id)
    with pytest.raises(SecretUnreadable):
        composition.services().secrets.open(sealed, kind=kind, workspace_id=workspace_id)


@pytest.mark.parametrize("mangle", [lambda s: s[:-4] + ("AAAA" if not s.endswith("AAAA") else "BBBB"),
                                    lambda s: "e2" + s[2:], lambda s: s.replace(".", "", 1), lambda s: ""])
def test_a_tampered_or_malformed_secret_is_refused(box, mangle):
    sealed = box.seal({"k": "v"}, kind="job-env", workspace_id="ws_a")
    with pytest.raises(SecretUnreadable):
        box.open(mangle(sealed), kind="job-env", workspace_id="ws_a")


def test_a_burst_of_seals_and_opens_costs_one_data_key_and_one_decrypt(aws_resources):
    services = composition.services()
    counting = CountingKms(services.kms)
    box = SecretBox(counting, services.clock)
    sealed = [box.seal({"n": n}, kind="job-env", workspace_id="ws_a") for n in range(50)]
    reader = SecretBox(counting, services.clock)
    assert [reader.open(s, kind="job-env", workspace_id="ws_a") for s in sealed] == [{"n": n} for n in range(50)]
    assert (counting.generated, counting.decrypted) == (1, 1)


def test_a_data_key_is_not_used_past_its_time(aws_resources):
    services = composition.services()

    class Clock:
        now_value = 1000.0

        def now(self):
            return self.now_value

    clock = Clock()
    counting = CountingKms(services.kms)
    box = SecretBox(counting, clock, key_seconds=60)
    box.seal("a", kind="job-env", workspace_id="ws_a")
    clock.now_value += 61
    box.seal("b", kind="job-env", workspace_id="ws_a")
    assert counting.generated == 2
