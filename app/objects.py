"""S3: the bucket holding the files users give their installations, and presigned URLs through
which a runtime fetches them.

A runtime on a user's host has no AWS identity, so it never calls S3 itself with credentials: the
API signs a GET for one object, valid for a bounded time, and the runtime fetches that URL.
"""

from typing import Any

from app.aws import AwsClients

PRESIGNED_MAX_SECONDS = 7 * 24 * 3600  # SigV4's limit


class ObjectStore:
    def __init__(self, clients: AwsClients, bucket: str):
        self._clients = clients
        self.bucket = bucket

    @property
    def _s3(self) -> Any:
        return self._clients.client("s3")

    def put(self, key: str, body: bytes, *, content_type: str = "application/octet-stream") -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000
            batch = [{"Key": key} for key in keys[start:start + 1000]]
            if batch:
                self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def presigned_get(self, key: str, seconds: int) -> str:
        return self._s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                               ExpiresIn=max(1, min(seconds, PRESIGNED_MAX_SECONDS)))

    def ensure_bucket(self) -> None:
        """Create the bucket where no CloudFormation does (the local stack, tests)."""
        existing = {bucket["Name"] for bucket in self._s3.list_buckets().get("Buckets", [])}
        if self.bucket not in existing:
            self._s3.create_bucket(Bucket=self.bucket)
