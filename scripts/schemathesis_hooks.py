"""Schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

One failure Schemathesis reports is the API keeping a promise: a schema-valid POST /pedidos whose
Idempotency-Key an earlier request with another body already used is refused, 422
`idempotency_key_reused`, as the key's contract says (README: "Retrying safely"). Schemathesis
draws keys at random and cannot know their history, so it takes that refusal for valid data
rejected. Only that exact answer is dropped; every other failure stays.
"""

import json

import schemathesis


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if response is None or response.status_code != 422:
        return True
    try:
        body = json.loads(response.content)
    except ValueError:
        return True
    return not (
        isinstance(body, dict)
        and body.get("error") == "idempotency_key_reused"
        and body.get("field") == "Idempotency-Key"
    )
