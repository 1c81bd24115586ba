"""bench/nemesis.py's bookkeeping: reproducible schedules, lost-write and gap accounting."""

from __future__ import annotations

from tests.bench_module import load_bench

nemesis = load_bench("nemesis", "nemesis_bench")


def test_a_seed_gives_the_same_schedule_and_covers_the_time() -> None:
    kinds = list(nemesis.KINDS)
    first = [(f.at, f.kind, f.target, f.duration) for f in nemesis.schedule(7, 90, kinds)]
    again = [(f.at, f.kind, f.target, f.duration) for f in nemesis.schedule(7, 90, kinds)]
    assert first == again and first != [(f.at, f.kind, f.target, f.duration)
                                        for f in nemesis.schedule(8, 90, kinds)]
    assert first[0][0] == 5.0 and first[-1][0] < 90 and all(k in kinds for _, k, _, _ in first)
    assert all(f.target == "random" for f in nemesis.schedule(3, 600, ["remove"]))


def test_lost_writes_are_acknowledged_writes_older_than_what_a_key_holds() -> None:
    W = nemesis.Write
    writes = [W(1, "a", "h", 0.0, "ack"), W(2, "a", "h", 0.0, "unknown"), W(3, "b", "h", 0.0, "ack"),
              W(4, "b", "h", 0.0, "not_applied"), W(5, "c", "h", 0.0, "ack")]
    # a: a later write of unknown fate committed (fine); b: the ack holds; c: missing → lost
    assert nemesis.lost_writes(writes, {"a": "w2", "b": "w3"}) == ["c: holds None, acknowledged w5"]
    assert nemesis.lost_writes(writes, {"a": "w1", "b": "w3", "c": "w5"}) == []
    assert nemesis.lost_writes(writes, {"a": "w1", "b": "w1", "c": "w5"}) == ["b: holds w1, acknowledged w3"]


def test_longest_gap_counts_slots_without_a_data_answer_in_the_window() -> None:
    some, none = frozenset({"n1"}), frozenset()
    samples = [(0.00, some), (0.02, none), (0.04, none), (0.06, some), (0.08, none), (0.10, none),
               (0.12, none), (0.14, some)]
    assert abs(nemesis.longest_gap(samples, 0.0, 1.0) - 0.06) < 1e-9
    assert abs(nemesis.longest_gap(samples, 0.0, 0.07) - 0.04) < 1e-9
    assert abs(nemesis.longest_gap(samples[:3], 0.0, 0.10) - 0.08) < 1e-9  # still out at the end


def test_missed_slots_are_grouped_into_episodes_with_what_each_node_replied() -> None:
    fault = nemesis.Fault(5.0, "kill", "leader", 1.0, node="n1", started=104.0, ended=106.0)
    slot = nemesis.SLOT
    outside = [(110.0, frozenset({"n1"})), (110.0 + slot, frozenset()), (110.0 + 2 * slot, frozenset()),
               (110.0 + 3 * slot, frozenset({"n1"})), (130.0, frozenset())]
    outcomes = {110.0 + slot: {"n1": "silent", "n2": "REFUSED"}, 110.0 + 2 * slot: {"n1": "silent", "n2": "REFUSED"},
                130.0: {"n1": "REFUSED"}}
    lines = nemesis.missed_episodes(outside, outcomes, [fault], begin=100.0)
    assert len(lines) == 2
    assert lines[0].startswith("t= 10.02s 2 slot(s), 4.0s after kill n1 ended")
    assert "n1 {'silent': 2}" in lines[0] and "n2 {'REFUSED': 2}" in lines[0]
    assert lines[1].startswith("t= 30.00s 1 slot(s), 24.0s after kill n1 ended")
