"""``GET /v1/customers`` from the cached folds: each call takes the events stored since the last, from any writer."""

from __future__ import annotations

import timeline
from tests.factories import deposit, registered
from timeline.application.views import state_json


def test_the_list_takes_events_another_writer_stored_since_the_last_call_and_equals_state_all(served):
    first = served.get("/v1/customers", "compliance").json()["customers"]
    assert [c["customer_id"] for c in first] == ["C1", "C2"]
    served.get("/v1/customers/C1/state", "compliance")  # one stream also read on its own: no event twice
    with timeline.open(served.url) as tl:
        report = tl.ingest([deposit("C1", amount="250.00"), registered("C3", branch_id="BR001")])
        assert report.rejected == 0, report.rejects
        everyone = [state_json(s) for s in tl.states()]
    listed = served.get("/v1/customers", "compliance").json()["customers"]
    assert [c["customer_id"] for c in listed] == ["C1", "C2", "C3"]
    assert listed[0]["aum"] != first[0]["aum"]
    asked = {"as_of", "known_at"}  # the instants of the question: "now" of each call
    assert [{k: v for k, v in c.items() if k not in asked} for c in listed] == [
        {k: v for k, v in c.items() if k not in asked} for c in everyone
    ]
    assert [c["customer_id"] for c in served.get("/v1/customers", "branch_head").json()["customers"]] == ["C1", "C3"]
