"""The list-append checker on hand-built histories: each anomaly class, false alarms, Elle's own.

Transactions are written in Elle's test shorthand: `ax1` appends 1 to x, `ry12` reads y as
[1, 2], `rx` reads x as []. Unless a test says otherwise each transaction runs alone on a
process of its own, invoked after the previous one completed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from anomalies import check_history, read_events, render_cycle_html, smallest_cycle
from anomalies.checker import CheckResult
from anomalies.history import HistoryInputError, ParsedHistory

Event = tuple[str, int, str]


def mops(spec: str) -> list[list[Any]]:
    """Parse Elle's shorthand: `ax1ry12` is [["append", "x", 1], ["r", "y", [1, 2]]]."""
    parsed: list[list[Any]] = []
    for function, key, digits in re.findall(r"([ar])([a-z])(\d*)", spec):
        if function == "a":
            parsed.append(["append", key, int(digits)])
        else:
            parsed.append(["r", key, [int(d) for d in digits]])
    return parsed


def invoked(spec: str) -> list[list[Any]]:
    """Return a transaction as invoked: reads hold null."""
    return [[f, k, None if f == "r" else v] for f, k, v in mops(spec)]


def events(*steps: Event, request_ids: bool = False) -> ParsedHistory:
    """Build a history from (type, process, spec) steps in the order they happened."""
    lines = []
    for index, (kind, process, spec) in enumerate(steps):
        event: dict[str, Any] = {
            "index": index,
            "time": index * 1_000_000,
            "process": process,
            "type": kind,
            "f": "txn",
            "value": invoked(spec) if kind != "ok" else mops(spec),
        }
        if request_ids and kind != "invoke":
            event["request_id"] = f"req-{index}"
        lines.append(json.dumps(event))
    return read_events(lines)


def serial(*specs: str, outcomes: dict[int, str] | None = None) -> ParsedHistory:
    """One transaction after another, each on its own process; outcomes by position."""
    steps: list[Event] = []
    for number, spec in enumerate(specs):
        outcome = (outcomes or {}).get(number, "ok")
        steps.append(("invoke", number, spec))
        steps.append((outcome, number, spec))
    return events(*steps)


def counts(result: CheckResult) -> dict[str, int]:
    return dict(result.anomaly_counts)


# -- each anomaly class ---------------------------------------------------------------------


def test_g0_write_cycle() -> None:
    # Elle checker-test "G0": x orders T1 before T2, y orders T2 before T1.
    result = check_history(serial("ax1ay1", "ax2ay2", "rx12ry21"))
    assert counts(result) == {"G0": 1}
    assert result.not_models == ("read-uncommitted",)
    assert not result.valid
    (g0,) = result.anomalies["G0"]
    assert [step["kind"] for step in g0.steps] == ["ww", "ww"]


def test_g1a_aborted_read() -> None:
    # Elle checker-test "G1a": T2 reads the append of a transaction that failed.
    result = check_history(serial("ax1", "rx1", outcomes={0: "fail"}))
    assert counts(result) == {"G1a": 1}
    assert result.not_models == ("read-committed",)
    assert check_history(serial("ax1", "rx1", outcomes={0: "fail"}), "read-uncommitted").valid


def test_g1b_intermediate_read_is_also_g_single() -> None:
    # Elle checker-test "G1b": rx1 saw T1's first append but not its final one.
    result = check_history(serial("ax1ax2", "rx1"), "strict-serializable")
    assert counts(result) == {"G-single": 1, "G1b": 1}
    (g1b,) = result.anomalies["G1b"]
    assert "ending in 1, which T2 appended but then appended 2" in g1b.text


def test_g1c_circular_information_flow() -> None:
    # Elle checker-test "G1c": T2 appends x after T1, but T1 read T2's append to y.
    result = check_history(serial("ax1ry1", "ax2ay1", "rx12"))
    assert counts(result) == {"G1c": 1}
    assert result.not_models == ("read-committed",)
    (g1c,) = result.anomalies["G1c"]
    assert sorted(step["kind"] for step in g1c.steps) == ["wr", "ww"]


def test_g_single_read_skew() -> None:
    # Elle checker-test "G-single": T2 misses T1's append to y but T1 precedes T2 on x.
    result = check_history(serial("ax1ay1", "ax2ry", "rx12"))
    assert counts(result) == {"G-single": 1}
    assert result.not_models == ("consistent-view", "repeatable-read")


def test_g2_item_write_skew() -> None:
    # Elle checker-test "G2" and repeatable-read-test: two reads of the empty state.
    history = serial("ax1ry", "ay1rx")
    assert check_history(history, "read-committed").valid
    result = check_history(history, "repeatable-read")
    assert counts(result) == {"G2-item": 1}
    assert result.not_models == ("repeatable-read",)
    assert not result.valid


def test_incompatible_order_and_the_g1c_it_hides() -> None:
    # Elle checker-test "contradictory read orders".
    result = check_history(serial("ax1ry1", "ax2", "ax3ay1", "rx13", "rx123"))
    assert counts(result) == {"G1c": 1, "incompatible-order": 1}
    (order,) = result.anomalies["incompatible-order"]
    assert order.details["values"] == [[1, 3], [1, 2, 3]]  # as Elle reports it
    (g1c,) = result.anomalies["G1c"]
    assert len(g1c.steps) == 3


def test_internal_read_disagrees_with_own_append() -> None:
    # Elle checker-test "internal consistency violation" (a G0 rides along).
    result = check_history(serial("ax1ax2ax4", "ax3rx1234"))
    assert counts(result)["internal"] == 1
    (internal,) = result.anomalies["internal"]
    assert internal.details["expected"] == ["...", 3]
    assert internal.details["read"] == [1, 2, 3, 4]


def test_internal_read_after_read() -> None:
    # Elle internal-cases-test "read-append-read": stale re-read after an own append.
    result = check_history(serial("rx12ax3rx12", "ax1", "ax2"))
    assert counts(result).get("internal") == 1
    (internal,) = result.anomalies["internal"]
    assert internal.details["expected"] == [1, 2, 3]


def test_duplicate_elements() -> None:
    # Elle checker-test "duplicated elements": also a G1c. As Elle says, [1, 2, 1] makes 1 look
    # appended last, so a G-single shows too; read committed allows that one.
    result = check_history(serial("ax1ry1", "ax2ay1", "rx121"), "read-committed")
    assert counts(result) == {"G-single": 1, "G1c": 1, "duplicate-elements": 1}
    assert result.forbidden_kinds == ("G1c", "duplicate-elements")
    assert result.not_models == ("read-uncommitted",)


def test_future_read() -> None:
    # Elle future-read-test: a transaction reads its own later append.
    result = check_history(serial("rx1ax1"), "read-committed")
    assert counts(result) == {"future-read": 1}
    assert result.not_models == ("read-committed",)


def test_lost_update() -> None:
    # Elle lost-update-test: two transactions read [0] and both append to x.
    result = check_history(serial("ax0", "rx0ax1", "rx0ax2"))
    assert counts(result) == {"G2-item": 1, "lost-update": 1}
    assert result.not_models == ("cursor-stability", "update-atomic")
    # "one txn, double write": one transaction appending twice over its read is fine.
    assert check_history(serial("rxax1ax2", "rx12")).anomaly_counts == {}


def test_realtime_variant_only_under_strict_serializable() -> None:
    # Elle checker-test "Strong SI violation": T2 read [1] after T1's append of 2 completed.
    history = events(
        ("invoke", 0, "ax1"),
        ("ok", 0, "ax1"),
        ("invoke", 1, "ax2"),
        ("ok", 1, "ax2"),
        ("invoke", 2, "rx1"),
        ("ok", 2, "rx1"),
        ("invoke", 3, "rx12"),
        ("ok", 3, "rx12"),
    )
    assert check_history(history, "serializable").valid
    result = check_history(history, "strict-serializable")
    assert counts(result) == {"G-single-realtime": 1}
    assert result.not_models == ("strong-snapshot-isolation",)
    (cycle,) = result.anomalies["G-single-realtime"]
    assert [step["kind"] for step in cycle.steps] == ["rw", "realtime"]
    assert "completed (index 3) before" in cycle.steps[1]["text"]


def test_process_variant_under_strong_session_snapshot_isolation() -> None:
    # Elle wr-process-test (jepsen-io/elle#21): t0 -wr-> t1 -process-> t2 -wr-> t0.
    history = events(
        ("invoke", 1, "rxay1"),
        ("ok", 1, "rx1ay1"),
        ("invoke", 2, "ry"),
        ("ok", 2, "ry1"),
        ("invoke", 2, "ax1"),
        ("ok", 2, "ax1"),
    )
    assert check_history(history, "serializable").valid
    result = check_history(history, "strong-session-snapshot-isolation")
    assert counts(result) == {"G1c-process": 1}
    assert result.not_models == ("strong-session-read-committed",)


# -- Elle's own tests, translated -------------------------------------------------------------


def test_elle_unobserved_write_test() -> None:
    # elle.list-append-test/unobserved-write-test: y never shows 1, so 1 came after [2]:
    # G-single (ry -rw-> w1 -ww-> w2 -wr-> ry) and, worse, G0 (w1 and w2 in both orders).
    steps: list[Event] = [("invoke", p, s) for p, s in enumerate(["ax1ay1", "ax2ay2", "ax3ay3"])]
    steps += [("invoke", 3, "rx12"), ("invoke", 4, "ry2")]
    steps += [("ok", p, s) for p, s in enumerate(["ax1ay1", "ax2ay2", "ax3ay3"])]
    steps += [("ok", 3, "rx12"), ("ok", 4, "ry2")]
    result = check_history(events(*steps))
    assert counts(result) == {"G-single": 1, "G0": 1}
    assert result.not_models == ("read-uncommitted",)
    (g_single,) = result.anomalies["G-single"]
    assert [step["kind"] for step in g_single.steps] == ["rw", "ww", "wr"]
    assert "which no read observed and so came after 2" in g_single.steps[0]["text"]


def test_elle_g_nonadjacent_test() -> None:
    # elle.list-append-test/G-nonadjacent-test: rw wr rw wr breaks snapshot isolation.
    result = check_history(serial("ax1", "rx1ry", "ay1", "ry1rx"))
    assert counts(result) == {"G-nonadjacent": 1}
    assert result.not_models == ("repeatable-read", "snapshot-isolation")
    assert (
        check_history(serial("ax1", "rx1ry", "ay1", "ry1rx"), "snapshot-isolation").valid is False
    )
    # ... but rw rw wr rw wr, with two rw edges adjacent, does not.
    adjacent = serial("rx5ay1", "ryaz2", "rzat3", "rt3au4", "ruax5")
    assert check_history(adjacent, "snapshot-isolation").valid


def test_elle_rr_g_nonadjacent_item_test() -> None:
    # elle.list-append-test/rr-g-nonadjacent-item-test.
    result = check_history(serial("ax1at1", "rx1ry", "ay1az2", "rz2rt"), "repeatable-read")
    assert counts(result) == {"G-nonadjacent": 1}
    assert result.not_models == ("repeatable-read", "snapshot-isolation")
    (cycle,) = result.anomalies["G-nonadjacent"]
    assert sorted(step["kind"] for step in cycle.steps) == ["rw", "rw", "wr", "wr"]


def test_elle_rr_g_single_item_test() -> None:
    # elle.list-append-test/rr-g-single-item-test: repeatable read forbids G-single on items.
    result = check_history(serial("ax1ay1", "rx1ry"), "repeatable-read")
    assert counts(result) == {"G-single": 1}
    assert not result.valid


# -- no false alarms --------------------------------------------------------------------------


def test_concurrent_appends_to_different_keys_are_fine() -> None:
    history = events(
        ("invoke", 0, "ax1"),
        ("invoke", 1, "ay1"),
        ("invoke", 2, "az1"),
        ("ok", 1, "ay1"),
        ("ok", 0, "ax1"),
        ("ok", 2, "az1"),
        ("invoke", 3, "rx1ry1rz1"),
        ("ok", 3, "rx1ry1rz1"),
    )
    result = check_history(history, "strict-serializable")
    assert result.valid
    assert result.anomaly_counts == {}
    assert "strict-serializable" in result.consistent_with


def test_reads_of_empty_lists_are_fine() -> None:
    result = check_history(serial("rx", "ry", "rxry", "ax1", "rx1ry"), "strict-serializable")
    assert result.anomaly_counts == {}


def test_info_append_never_observed_is_fine() -> None:
    history = events(
        ("invoke", 0, "ax1"),
        ("info", 0, "ax1"),
        ("invoke", 1, "rx"),
        ("ok", 1, "rx"),
        ("invoke", 2, "ax2"),
        ("ok", 2, "ax2"),
        ("invoke", 3, "rx2"),
        ("ok", 3, "rx2"),
    )
    result = check_history(history, "strict-serializable")
    assert result.anomaly_counts == {}
    assert result.transactions == {"ok": 3, "fail": 0, "info": 1}


def test_info_append_observed_is_fine() -> None:
    # The info transaction did happen: its append was read, and everything agrees.
    history = events(
        ("invoke", 0, "ax1"),
        ("info", 0, "ax1"),
        ("invoke", 1, "rx1"),
        ("ok", 1, "rx1"),
        ("invoke", 2, "ax2"),
        ("ok", 2, "ax2"),
        ("invoke", 3, "rx12"),
        ("ok", 3, "rx12"),
    )
    result = check_history(history, "strict-serializable")
    assert result.anomaly_counts == {}


def test_invoke_never_completed_counts_as_info() -> None:
    history = events(("invoke", 0, "ax1"), ("invoke", 1, "rx1"), ("ok", 1, "rx1"))
    result = check_history(history)
    assert result.transactions == {"ok": 1, "fail": 0, "info": 1}
    assert result.anomaly_counts == {}


def test_failed_append_not_read_is_fine() -> None:
    result = check_history(serial("ax1", "rx", "ax2", "rx2", outcomes={0: "fail"}))
    assert result.anomaly_counts == {}


def test_own_intermediate_read_is_not_g1b() -> None:
    # Elle g1b-cases-test "internal reads".
    assert check_history(serial("ax1rx1ax2", "rx12")).anomaly_counts == {}


# -- explanations and models ------------------------------------------------------------------


def test_explanation_names_transactions_edges_and_request_ids() -> None:
    steps: list[Event] = []
    for process, spec in enumerate(["ax1ry1", "ax2ay1", "rx12"]):
        steps += [("invoke", process, spec), ("ok", process, spec)]
    result = check_history(events(*steps, request_ids=True))
    (g1c,) = result.anomalies["G1c"]
    by_name = {info["name"]: info for info in g1c.transactions}
    wr = next(step for step in g1c.steps if step["kind"] == "wr")
    ww = next(step for step in g1c.steps if step["kind"] == "ww")
    # The reader of y is the writer of x = 1; the appender of y = 1 appended x = 2.
    reader, writer = by_name[wr["target"]], by_name[wr["source"]]
    assert reader["operations"] == ["append x 1", "r y [1]"]
    assert writer["operations"] == ["append x 2", "append y 1"]
    assert reader["request_id"] == "req-1"
    assert writer["request_id"] == "req-3"
    assert wr["text"] == f"{wr['target']} read {wr['source']}'s append 1 to key y: [1] (wr)"
    assert ww["key"] == "x"
    assert (ww["value"], ww["next_value"]) == (1, 2)
    assert "request req-1" in g1c.text
    assert "a contradiction!" in g1c.text
    json.dumps(result.to_json())


def test_rw_explanation_says_what_was_read() -> None:
    result = check_history(serial("ax1ay1", "ax2ry", "rx12"))
    (cycle,) = result.anomalies["G-single"]
    rw = next(step for step in cycle.steps if step["kind"] == "rw")
    assert re.fullmatch(
        r"T\d read key y as \[\] \(empty\) before T\d appended 1, the first version \(rw\)",
        rw["text"],
    )


def test_g2_item_only_history_is_consistent_with_snapshot_isolation() -> None:
    result = check_history(serial("ax1ry", "ay1rx"))
    assert not result.valid
    assert result.forbidden_kinds == ("G2-item",)
    assert "snapshot-isolation" in result.consistent_with
    assert "serializable" in result.also_not_models
    assert "INVALID: not serializable (G2-item)" in result.summary()
    assert check_history(serial("ax1ry", "ay1rx"), "snapshot-isolation").valid


def test_anomalies_a_model_allows_are_reported_as_information() -> None:
    result = check_history(serial("ax1ry", "ay1rx"), "read-committed")
    assert result.valid
    assert result.anomaly_counts == {"G2-item": 1}
    assert result.forbidden_kinds == ()


def test_only_a_few_of_each_kind_are_kept_but_all_are_counted() -> None:
    # Five independent write-skews on keys (a, b), (c, d), ...: five SCCs.
    keys = "abcdefghij"
    specs = []
    for pair in range(5):
        first, second = keys[2 * pair], keys[2 * pair + 1]
        specs += [f"a{first}1r{second}", f"a{second}1r{first}"]
    result = check_history(serial(*specs), keep_per_kind=2)
    assert result.anomaly_counts == {"G2-item": 5}
    assert len(result.anomalies["G2-item"]) == 2
    assert result.cyclic_components == 5


def test_render_cycle_html_shows_each_edge() -> None:
    result = check_history(serial("ax1ry1", "ax2ay1", "rx12"))
    cycle = smallest_cycle(result)
    assert cycle is not None
    assert cycle.kind == "G1c"
    html = render_cycle_html(cycle)
    assert html.startswith('<table class="anomaly-cycle">')
    assert html.count("&rarr;") == 2
    assert "(wr)" in html
    assert "(ww)" in html
    assert smallest_cycle(check_history(serial("ax1", "rx1"))) is None


def test_unknown_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown consistency model 'snapshot'"):
        check_history(serial("ax1"), "snapshot")


def test_rustworkx_backend_agrees() -> None:
    pytest.importorskip("rustworkx")
    history = serial("ax1ay1", "ax2ay2", "rx12ry21", "ax3ry", "ay3rx")
    assert (
        check_history(history, backend="rustworkx").anomaly_counts
        == check_history(history).anomaly_counts
    )


# -- reading ----------------------------------------------------------------------------------


def test_duplicate_append_values_are_bad_input() -> None:
    with pytest.raises(HistoryInputError, match="line 3: value 1 appended to key 'x' a second"):
        serial("ax1", "ax1")


def test_completion_must_match_its_invoke() -> None:
    lines = [
        json.dumps({"process": 0, "type": "invoke", "f": "txn", "value": [["append", "x", 1]]}),
        json.dumps({"process": 0, "type": "ok", "f": "txn", "value": [["append", "x", 2]]}),
    ]
    with pytest.raises(HistoryInputError, match="line 2: micro-operation 0"):
        read_events(lines)


def test_int_and_string_keys_are_distinct() -> None:
    lines = [
        json.dumps({"process": 0, "type": "invoke", "f": "txn", "value": [["append", 3, 1]]}),
        json.dumps({"process": 0, "type": "ok", "f": "txn", "value": [["append", 3, 1]]}),
        json.dumps({"process": 1, "type": "invoke", "f": "txn", "value": [["r", "3", None]]}),
        json.dumps({"process": 1, "type": "ok", "f": "txn", "value": [["r", "3", [1]]]}),
    ]
    # "3" never had 1 appended, so reading it there is not explained by any transaction.
    history = read_events(lines)
    assert history.key_names == [3, "3"]
