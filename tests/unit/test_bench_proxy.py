"""`make bench` counts calls by what each request is: check its classifier."""

from __future__ import annotations

import json

from bench.proxy import Counts, classify

AUTH = "AWS4-HMAC-SHA256 Credential=test/20261130/us-east-1/{}/aws4_request, SignedHeaders=x"


def test_sqs_json_protocol_by_target_header_and_receive_by_queue():
    headers = {"authorization": AUTH.format("sqs"), "x-amz-target": "AmazonSQS.ReceiveMessage"}
    body = json.dumps({"QueueUrl": "http://127.0.0.1:1/000000000000/dev-analytics"}).encode()
    assert classify(headers, body) == ("sqs:ReceiveMessage", "dev-analytics")
    headers["x-amz-target"] = "AmazonSQS.DeleteMessageBatch"
    assert classify(headers, b"{}") == ("sqs:DeleteMessageBatch", None)


def test_sns_query_protocol_by_form_action():
    headers = {"authorization": AUTH.format("sns")}
    assert classify(headers, b"Action=PublishBatch&TopicArn=arn") == ("sns:PublishBatch", None)


def test_counts_subtract_to_what_happened_in_between():
    before = Counts()
    before.actions["sqs:ReceiveMessage"] += 2
    after = before.copy()
    after.actions["sqs:ReceiveMessage"] += 3
    after.actions["sns:PublishBatch"] += 1
    assert (after - before).total == 4
