"""The sweeper and dead-letter Lambda entry points, driven as AWS drives them, on moto."""

import json
import time

from tests.conftest import bearer, signup


def _job(client, token, **body):
    response = client.post("/v1/jobs", headers=bearer(token), json={"type": "agent.run", "payload": {"agent": "a"},
                                                                   "wait": True, **body})
    assert response.status_code == 202
    return response.json()["job_id"]


def test_the_sweeper_expires_jobs_past_their_ttl(client):
    import functions.sweeper

    token = signup(client)["token"]
    job_id = _job(client, token, ttl_seconds=1)
    time.sleep(1.1)
    report = functions.sweeper.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None)
    assert report["expired"] == 1
    job = client.get(f"/v1/jobs/{job_id}", headers=bearer(token)).json()
    assert job["status"] == "expired"
    assert functions.sweeper.handler({}, None)["expired"] == 0  # idempotent


def test_the_dead_letter_consumer_ends_the_job_with_a_reason(client):
    import functions.dead_letters

    token = signup(client)["token"]
    workspace_id = client.get("/v1/auth/me", headers=bearer(token)).json()["user"]["workspace_id"]
    job_id = _job(client, token)
    body = json.dumps({"message": {"kind": "job", "job_id": job_id, "workspace_id": workspace_id}})
    event = {"Records": [
        {"messageId": "m1", "receiptHandle": "r1", "body": body, "attributes": {"ApproximateReceiveCount": "5"},
         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:berth-dead-letters", "awsRegion": "us-east-1"},
        {"messageId": "m2", "receiptHandle": "r2", "body": "not json at all",
         "attributes": {"ApproximateReceiveCount": "5"},
         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:berth-dead-letters", "awsRegion": "us-east-1"},
    ]}
    answer = functions.dead_letters.handler(event, None)
    assert answer == {"batchItemFailures": []}  # an unreadable letter is dropped, not retried forever
    job = client.get(f"/v1/jobs/{job_id}", headers=bearer(token)).json()
    assert job["status"] == "error" and "5 deliveries" in job["error"]
