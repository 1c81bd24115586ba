"""Cluster mode with real processes on their own 127.0.x.y addresses."""

import signal
import time
import urllib.request

import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.cluster import Cluster, cluster_key
from tests.e2e.harness import HTTPBackend, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def backend():
    server = HTTPBackend("127.0.3.1")
    yield server
    server.stop()


@pytest.fixture
def make_cluster(tmp_path, backend):
    made = []

    def make(size=3, subnet="127.0.2", **kwargs):
        cluster = Cluster(tmp_path / f"c{len(made)}", size, backend.host, backend.port, subnet=subnet, **kwargs)
        cluster.base.mkdir()
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop_all()


def test_bootstrap_join_one_leader_and_failover(make_cluster):
    """Bootstrap + two joins: exactly one node answers with data, the others REFUSED; killing the
    leader makes another node answer; status, members, leader endpoints and metrics agree."""
    cluster = make_cluster()
    cluster.bootstrap()
    leader = cluster.wait_leader()
    others = [h for h in cluster.hosts if h != leader]
    assert {h: cluster.answers(h) for h in others} == {h: "REFUSED" for h in others}

    status = cluster.status(others[0])
    assert status["mode"] == "cluster" and status["is_leader"] is False
    assert status["leader_address"] == cluster.address(leader)
    assert status["raft"]["state"] == "Follower" and status["raft"]["term"] >= 1
    assert sorted(m["address"] for m in status["members"]) == sorted(cluster.address(h) for h in cluster.hosts)
    # A member just joined is "alive" once the follower hears from it (not at once on a loaded machine).
    wait_until(lambda: all(m["status"] == "alive" for m in cluster.status(others[0])["members"]), 5,
               message="every member alive")
    wait_until(lambda: {m["name"] for m in cluster.status(leader)["members"]}
               == {f"node-{h}" for h in cluster.hosts}, 5, message="member names replicated")
    assert cluster.api(leader, "/api/v1/cluster/leader")[0] == 200
    assert cluster.api(others[0], "/api/v1/cluster/leader")[0] == 503
    assert cluster.api(leader, "/api/v1/ready")[0] == 200
    assert cluster.api(others[0], "/api/v1/ready")[0] == 503
    assert cluster.api(leader, "/api/v1/cluster/members")[1]["members"] == cluster.status(leader)["members"]

    metrics = scrape(cluster, leader)
    assert metrics[("opengslb_cluster_is_leader", (("node", f"node-{leader}"),))] == 1
    assert metrics[("opengslb_cluster_raft_state", (("node", f"node-{leader}"), ("state", "leader")))] == 1
    assert metrics[("opengslb_cluster_members_total", ())] == 3
    assert metrics[("opengslb_cluster_healthy_members", ())] == 3
    assert ("opengslb_cluster_elections_total", ()) in metrics
    assert ("opengslb_cluster_last_election_timestamp", ()) in metrics
    follower_metrics = scrape(cluster, others[0])
    assert follower_metrics[("opengslb_cluster_is_leader", (("node", f"node-{others[0]}"),))] == 0
    hashes = {labels for (name, labels) in metrics if name == "opengslb_config_info"}
    assert hashes == {labels for (name, labels) in follower_metrics if name == "opengslb_config_info"}

    cluster.kill(leader)
    new_leader = cluster.wait_leader(others, timeout=5)
    assert new_leader in others


def scrape(cluster, host):
    with urllib.request.urlopen(f"http://{host}:{cluster.metrics_port}/metrics", timeout=3) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_paused_leader_never_answers_after_resume(make_cluster):
    """SIGSTOP the leader: the others elect a new one; the resumed old leader answers no data,
    and at no sampled moment do two nodes answer with data."""
    cluster = make_cluster(subnet="127.0.4")
    cluster.bootstrap()
    leader = cluster.wait_leader()
    others = [h for h in cluster.hosts if h != leader]
    cluster.nodes[leader].signal(signal.SIGSTOP)
    new_leader = cluster.wait_leader(others, timeout=5)
    cluster.nodes[leader].signal(signal.SIGCONT)
    for _ in range(30):
        assert len(cluster.serving()) <= 1
    assert cluster.answers(leader) != "data"
    assert cluster.wait_leader() == new_leader


def test_restarted_node_rejoins_without_join(make_cluster):
    """A follower killed and restarted with no --join rejoins from its data dir."""
    cluster = make_cluster(subnet="127.0.5")
    cluster.bootstrap()
    leader = cluster.wait_leader()
    follower = [h for h in cluster.hosts if h != leader][0]
    cluster.kill(follower)
    cluster.start(follower)  # no --bootstrap, no --join
    wait_until(lambda: (cluster.status(follower) or {}).get("leader_address") == cluster.address(leader),
               15, message="restarted node follows the leader")
    assert cluster.answers(follower) == "REFUSED"


def test_joiner_killed_mid_join_resumes_without_join(make_cluster):
    """A joiner killed -9 once it has found the leader, restarted with no --join (as a
    supervisor restarts it with the stored command line), finishes joining from its data dir."""
    cluster = make_cluster(size=2, subnet="127.0.72")
    first, joiner = cluster.hosts
    cluster.start(first, bootstrap=True)
    leader = cluster.wait_leader([first])
    cluster.start(joiner, join=[cluster.address(first)])
    wait_until(lambda: "joining the cluster: leader" in cluster.nodes[joiner].log(), 15, interval=0.01,
               message="the joiner found the leader")
    cluster.kill(joiner)
    before = cluster.nodes[joiner].log()
    cluster.start(joiner)  # no --bootstrap, no --join
    wait_until(lambda: (cluster.status(joiner) or {}).get("leader_address") == cluster.address(leader),
               20, message="the restarted joiner follows the leader")
    cluster.wait_members(2, [first, joiner])
    assert cluster.nodes[joiner].process.poll() is None
    after = cluster.nodes[joiner].log()[len(before):]
    assert "rejoining the cluster from" in after and "holds no cluster state" not in after, after
    # Killed before its addition reached its log, it finishes joining now (else it had already).
    wait_until(lambda: "joined the cluster as" in cluster.nodes[joiner].log(), 10,
               message="the restarted joiner logged that it joined")


def test_member_removed_through_api_leaves(make_cluster):
    """POST /cluster/remove (token) takes a member out of every node's member list; the removed
    node notices, logs it and exits 0 within REMOVED_EXIT_BOUND."""
    cluster = make_cluster(subnet="127.0.6")
    cluster.bootstrap()
    leader = cluster.wait_leader()
    victim = [h for h in cluster.hosts if h != leader][0]
    removed = time.monotonic()
    code, body = cluster.api(leader, "/api/v1/cluster/remove", "POST", {"address": cluster.address(victim)},
                             timeout=15)
    assert code == 200, body
    wait_until(lambda: cluster.address(victim) not in
               [m["address"] for m in cluster.status(leader)["members"]], 10)
    assert len(cluster.status(leader)["members"]) == 2
    code, exited = cluster.wait_exit(victim, removed, REMOVED_EXIT_BOUND)
    assert code == 0 and exited <= REMOVED_EXIT_BOUND, (code, exited)
    assert "was removed from the cluster" in cluster.nodes[victim].log()
    assert cluster.answers(leader) == "data"
    unauthorized = urllib.request.Request(f"http://{leader}:{cluster.api_port}/api/v1/cluster/remove",
                                          method="POST", data=b'{"address": "x:1"}')
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(unauthorized, timeout=3)
    assert error.value.code == 401


@pytest.mark.parametrize("policy", ["drop", "forward"])
def test_follower_query_policies(make_cluster, policy):
    """drop: followers stay silent; forward: followers relay to the leader and return its answer."""
    cluster = make_cluster(subnet="127.0.7" if policy == "drop" else "127.0.8", follower_queries=policy)
    cluster.bootstrap()
    leader = wait_until(lambda: next((h for h in cluster.hosts if (cluster.status(h) or {}).get("serving")), None),
                        10, message="a serving leader")
    follower = [h for h in cluster.hosts if h != leader][0]
    if policy == "drop":
        assert cluster.answers(follower) == "timeout"
    else:
        wait_until(lambda: cluster.answers(follower, timeout=1.5) == "data", 10,
                   message="forwarded answer")
        reply = cluster.nodes[follower].query("app.cluster.test")
        assert reply.edns == -1  # the client sent no EDNS, so the relayed reply carries none


def test_wrong_key_is_rejected_and_counted(make_cluster):
    """A node with another cluster key cannot join; the member counts the rejected packets."""
    cluster = make_cluster(size=2, subnet="127.0.9")
    cluster.bootstrap(size=1)
    leader = cluster.wait_leader([cluster.hosts[0]])
    intruder = cluster.hosts[1]
    cluster.start(intruder, join=[cluster.address(leader)], key=cluster_key())
    wait_until(lambda: scrape(cluster, leader).get(("opengslb_cluster_rejected_packets_total", ()), 0) >= 1,
               10, message="the intruder's packets rejected")
    assert cluster.status(intruder) is None or cluster.status(intruder)["leader_address"] is None
    assert [m["address"] for m in cluster.status(leader)["members"]] == [cluster.address(leader)]
    metrics = scrape(cluster, leader)
    assert metrics[("opengslb_cluster_rejected_packets_total", ())] >= 1
    assert cluster.answers(leader) == "data"


def test_five_node_cluster_survives_two_failures(make_cluster):
    """Five nodes: one leader; with two members killed the remaining three still elect one."""
    cluster = make_cluster(size=5, subnet="127.0.10")
    cluster.bootstrap()
    leader = cluster.wait_leader()
    victims = [leader] + [h for h in cluster.hosts if h != leader][:1]
    for host in victims:
        cluster.kill(host)
    survivors = [h for h in cluster.hosts if h not in victims]
    assert cluster.wait_leader(survivors, timeout=8) in survivors


#: Longest acceptable outage of a SIGTERM handover (issue 13: a transfer, not an election timeout,
#: whose minimum is 0.5 s here).
HANDOVER_BOUND = 0.3
#: A stopped node must have exited (status 0) this soon after SIGTERM.
EXIT_BOUND = 5.0
#: A removed member notices (no leader for an election timeout, then the leader's member list
#: lacks it) and exits 0 within this.
REMOVED_EXIT_BOUND = 8.0


def settled_leader(cluster):
    """The serving leader, once every node follows it and sees every member alive."""
    return wait_until(lambda: _settled(cluster), 20, interval=0.2, message="a settled cluster")


def _settled(cluster):
    leader = cluster.wait_leader()
    statuses = [cluster.status(h) for h in cluster.nodes if cluster.nodes[h].process is not None]
    if all(s and s["leader_address"] == cluster.address(leader)
           and all(m["status"] == "alive" for m in s["members"]) for s in statuses):
        return leader
    return None


def test_sigterm_on_leader_hands_over_without_outage(make_cluster):
    """SIGTERM on the leader: a survivor answers with data within HANDOVER_BOUND of the leader's
    last data answer (a transfer), never together with it, and the old leader exits 0 within
    EXIT_BOUND, having logged the handover."""
    cluster = make_cluster(subnet="127.0.11")
    cluster.bootstrap()
    leader = settled_leader(cluster)
    others = [h for h in cluster.hosts if h != leader]
    before = cluster.watch(0.3)
    assert any(leader in nodes for _, nodes in before)
    last_data = max(t for t, nodes in before if leader in nodes)
    sent = time.monotonic()
    cluster.nodes[leader].signal(signal.SIGTERM)
    after = cluster.watch(EXIT_BOUND, until=lambda sample: bool(sample[1] & set(others)))
    after += cluster.watch(0.3)
    code, exited = cluster.wait_exit(leader, sent, EXIT_BOUND)
    first = next((t for t, nodes in after if nodes & set(others)), None)
    assert first is not None, "no survivor answered"
    assert first - last_data <= HANDOVER_BOUND, f"handover outage {first - last_data:.3f}s"
    assert all(len(nodes) <= 1 for _, nodes in before + after), "two nodes answered at once"
    assert code == 0 and exited <= EXIT_BOUND, (code, exited)
    log = cluster.nodes[leader].log()
    assert "handed leadership over to" in log and "Traceback" not in log


def test_sigterm_on_follower_and_on_a_leader_without_quorum_exits_promptly(make_cluster):
    """SIGTERM on a follower: it exits 0 within EXIT_BOUND and the leader keeps answering; then,
    the other follower killed, SIGTERM on the leader left without quorum exits 0 too."""
    cluster = make_cluster(subnet="127.0.60")
    cluster.bootstrap()
    leader = settled_leader(cluster)
    follower, other = [h for h in cluster.hosts if h != leader]
    sent = time.monotonic()
    cluster.nodes[follower].signal(signal.SIGTERM)
    samples = cluster.watch(1.0)
    code, exited = cluster.wait_exit(follower, sent, EXIT_BOUND)
    assert code == 0 and exited <= EXIT_BOUND, (code, exited)
    assert sum(1 for _, nodes in samples if nodes == {leader}) >= 0.9 * len(samples)
    cluster.kill(other)
    wait_until(lambda: cluster.answers(leader) != "data", 5, message="the leader without quorum stops")
    sent = time.monotonic()
    cluster.nodes[leader].signal(signal.SIGTERM)
    code, exited = cluster.wait_exit(leader, sent, EXIT_BOUND)
    assert code == 0 and exited <= EXIT_BOUND, (code, exited)


@pytest.mark.parametrize("through", ["leader", "follower"])
def test_removing_the_leader_hands_over_and_it_exits(make_cluster, through):
    """POST /cluster/remove of the leader, through its own API or a follower's: leadership moves
    to a survivor first, the removal succeeds, the old leader exits 0."""
    cluster = make_cluster(subnet="127.0.64" if through == "leader" else "127.0.65")
    cluster.bootstrap()
    leader = settled_leader(cluster)
    others = [h for h in cluster.hosts if h != leader]
    asked = time.monotonic()
    code, body = cluster.api(leader if through == "leader" else others[0], "/api/v1/cluster/remove", "POST",
                             {"address": cluster.address(leader)}, timeout=15)
    assert code == 200, body
    new_leader = cluster.wait_leader(others, timeout=5)
    code, exited = cluster.wait_exit(leader, asked, REMOVED_EXIT_BOUND)
    assert code == 0 and exited <= REMOVED_EXIT_BOUND, (code, exited)
    assert sorted(m["address"] for m in cluster.status(new_leader)["members"]) == \
        sorted(cluster.address(h) for h in others)
    assert "was removed from the cluster" in cluster.nodes[leader].log()


def test_sigterm_on_a_lone_node_exits_zero(make_cluster):
    """A one-node cluster stops at once on SIGTERM, status 0."""
    cluster = make_cluster(size=1, subnet="127.0.61")
    cluster.bootstrap()
    leader = cluster.wait_leader()
    sent = time.monotonic()
    cluster.nodes[leader].signal(signal.SIGTERM)
    code, exited = cluster.wait_exit(leader, sent, EXIT_BOUND)
    assert code == 0 and exited <= 2.0, (code, exited)


def test_leader_answers_on_the_anycast_vip(make_cluster):
    """With cluster.anycast_vip, the serving leader also answers on VIP:port (bound with IP_FREEBIND)."""
    cluster = make_cluster(size=1, subnet="127.0.12", anycast_vip="127.0.50.1")
    cluster.bootstrap()
    cluster.wait_leader()
    node = cluster.nodes[cluster.hosts[0]]
    reply = dns.query.udp(dns.message.make_query("app.cluster.test", "A"), "127.0.50.1",
                          port=cluster.dns_port, timeout=2)
    assert reply.answer and reply.answer[0][0].address == cluster.backend[0]
    assert node.process.poll() is None
