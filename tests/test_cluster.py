"""Scale-out on one machine (voiceivr/cluster/, voiceivr/telephony/front.py): the generated configuration, and a real
2-node cluster in network namespaces behind the front Kamailio, where a node is killed mid-call."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import shutil
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from tests.sip import siptools
from tests.sip.sip_handlers import tone
from tests.support.wait import wait_until
from voiceivr.cluster import Cluster, ClusterConfig, Network, NetworkError, can_make_namespaces
from voiceivr.cluster.harness import node_database_url
from voiceivr.errors import ConfigError
from voiceivr.telephony import front, kamailio

HAVE_KAMAILIO = shutil.which("kamailio") is not None


# ------------------------------------------------------------------------------------------- configuration


def test_network_plan_names_and_addresses() -> None:
    net = Network.plan("ab12", "10.77.3.0/24", 3)
    assert net.host_address == "10.77.3.1"
    assert [n.address for n in net.nodes] == ["10.77.3.11", "10.77.3.12", "10.77.3.13"]
    assert [n.namespace for n in net.nodes] == ["vivrab12n0", "vivrab12n1", "vivrab12n2"]
    # Linux interface names are at most 15 characters.
    assert all(len(name) <= 15 for n in net.nodes for name in (n.host_if, n.node_if)) and len(net.bridge) <= 15
    for tag, subnet, count, message in [("a-b", "10.77.0.0/24", 2, "tag"), ("ab", "10.77.0.0/29", 2, "subnet"),
                                        ("ab", "8.8.8.0/24", 2, "private"), ("ab", "10.77.0.0/24", 9, "nodes"),
                                        ("ab", "nonsense", 2, "subnet")]:
        with pytest.raises(NetworkError, match=message):
            Network.plan(tag, subnet, count)


def test_dispatcher_list_and_bad_nodes() -> None:
    text = front.dispatcher_list([("10.77.0.11", 5060), ("10.77.0.12", 5070)])
    assert "1 sip:10.77.0.11:5060 0 0 name=node0\n" in text and "1 sip:10.77.0.12:5070 0 0 name=node1\n" in text
    with pytest.raises(ConfigError, match="not an IP address"):
        front.dispatcher_list([("node1.example.com", 5060)])
    with pytest.raises(ConfigError, match="listed twice"):
        front.dispatcher_list([("10.77.0.11", 5060), ("10.77.0.11", 5060)])
    with pytest.raises(ConfigError, match="at least one"):
        front.dispatcher_list([])
    with pytest.raises(ConfigError, match="port"):
        front.dispatcher_list([("10.77.0.11", 0)])


def test_node_database_url_goes_over_the_unix_socket() -> None:
    url = node_database_url("postgresql+psycopg://postgres@127.0.0.1:5432/vc_1", "/var/run/postgresql")
    assert url == "postgresql+psycopg://postgres@/vc_1?host=%2Fvar%2Frun%2Fpostgresql"
    with pytest.raises(Exception, match="cannot be shared"):
        node_database_url("sqlite:///var/x.sqlite3", "/var/run/postgresql")


@pytest.mark.skipif(not HAVE_KAMAILIO, reason="Kamailio is not installed (scripts/test installs it)")
def test_generated_front_config_is_accepted_by_kamailio(tmp_path: Path) -> None:
    nodes = [("10.77.0.11", 5060), ("10.77.0.12", 5060)]
    files = front.write_front_config(tmp_path / "front", "10.77.0.1", 5060, nodes,
                                     front.FrontOptions(ping_interval_s=1, fr_timer_ms=700, node_lost_bye_s=1))
    kamailio.check_config("kamailio", files)
    text = files.config.read_text()
    assert 'modparam("dispatcher", "ds_ping_interval", 1)' in text and 'modparam("tm", "fr_timer", 700)' in text
    assert 'dlg_set_timeout_by_profile("node", "$var(node)", "1")' in text
    # Round robin, then the node with the fewest answered calls (the dialog profile) first: Kamailio 5.6's own load
    # by active calls (algorithm 10) crashed the front when it counted down the front's own BYEs for a lost node
    # (docs/deploy.md, section 9).
    assert 'ds_select_dst("1", "4")' in text and "ds_load" not in text
    assert 'get_profile_size("node", "$var(uri)", "$var(n)")' in text
    # A node that answered a ping with 503 (draining) keeps its calls when it leaves rotation.
    assert 'autoexpire=3;' in text and "if ($sht(refusing=>$var(node)) != $null) {" in text
    assert "@" + "PORT@" not in text
    with pytest.raises(ConfigError, match="ping interval"):
        front.write_front_config(tmp_path / "bad", "10.77.0.1", 5060, [("10.77.0.11", 5060)],
                                 front.FrontOptions(ping_interval_s=0))


@pytest.mark.skipif(not HAVE_KAMAILIO, reason="Kamailio is not installed (scripts/test installs it)")
def test_node_kamailio_config_answers_503_while_draining(tmp_path: Path) -> None:
    from voiceivr.settings import SipSettings

    workers = [kamailio.Worker("127.0.0.1", 5100)]
    files = kamailio.write_config(tmp_path / "k", SipSettings(), "127.0.0.1", 5099, workers)
    text = files.config.read_text()
    assert 'modparam("pv", "shvset", "draining=i:0")' in text
    assert "if ($shv(draining) == 1) {" in text
    kamailio.check_config("kamailio", files)


# ------------------------------------------------------------------------------------------- a real cluster


def admin_url() -> str | None:
    url = os.environ.get("VOICEIVR_TEST_POSTGRES_URL", "")
    if not url:
        return None
    from sqlalchemy.engine import make_url

    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def place(cluster: Cluster, count: int, seconds: float, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([siptools.PY, "-m", "voiceivr.cluster.caller", cluster.front_uri, str(count), str(seconds),
                             "--bind", cluster.front_address], env=env, cwd=siptools.ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def reports(proc: subprocess.Popen[bytes], timeout: float = 40) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=timeout)
    return [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]


def incoming(cluster: Cluster, index: int) -> int:
    return cluster.nodes[index].log_path.read_text(errors="replace").count("incoming call")


def by_node(cluster: Cluster, call: dict[str, Any]) -> int:
    """Which node carried a call (its SIP Call-ID in that node's log), -1 if none."""
    for node in cluster.nodes:
        if call["sip_call_id"] and call["sip_call_id"] in node.log_path.read_text(errors="replace"):
            return node.net.index
    return -1


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not HAVE_KAMAILIO, reason="Kamailio is not installed (scripts/test installs it)")
def cluster_setup(tmp_path: Path, nodes: int, prompt_s: float,
                  drain_timeout_s: float) -> tuple[ClusterConfig, dict[str, str]]:
    """A cluster of one-worker nodes on a random /24 of 10.77 whose calls hear a tone of ``prompt_s`` seconds,
    and the environment for the test's callers (skips without the shared PostgreSQL database)."""
    admin = admin_url()
    if admin is None:
        pytest.skip("VOICEIVR_TEST_POSTGRES_URL is not set: the cluster shares one PostgreSQL database")
    prompt = tmp_path / "long.wav"
    with wave.open(str(prompt), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone(8000, 440, prompt_s))
    env = siptools.base_env(tmp_path, VIVR_TEST_PROMPT=str(prompt))
    node_env = {k: v for k, v in env.items() if k.startswith(("VOICEIVR_", "VIVR_"))}
    for key in ("VOICEIVR_PATHS_VAR_DIR", "VOICEIVR_TEST_POSTGRES_URL", "VOICEIVR_TEST_REQUIRE_POSTGRES",
                "VOICEIVR_SIP_DRAIN_TIMEOUT_S"):
        node_env.pop(key, None)
    subnet = str(ipaddress.IPv4Network(f"10.77.{random.randint(100, 250)}.0/24"))
    config = ClusterConfig(nodes=nodes, workers=1, subnet=subnet, directory=tmp_path / "cluster", admin_url=admin,
                           env=node_env, drain_timeout_s=drain_timeout_s, start_timeout_s=45.0)
    return config, env


@pytest.mark.skipif(can_make_namespaces() is not None, reason=str(can_make_namespaces()))
def test_three_nodes_one_drained_one_killed(tmp_path: Path) -> None:
    """node2 drains (its call goes on, new calls go elsewhere, then it exits), node0 is killed (its call is ended
    by the front within 3 s, a new call lands on node1), and meanwhile two nodes append to one audit chain."""
    config, env = cluster_setup(tmp_path, nodes=3, prompt_s=12.0, drain_timeout_s=20.0)
    with Cluster(config) as cluster:
        # One 10 s call on each node (round robin).
        callers = place(cluster, 3, 10.0, env)
        # Meanwhile two nodes append to the one audit chain at once, from their namespaces.
        writers = [cluster.run_in_node(i, ["-m", "voiceivr.cluster.audit_writer", f"node{i}", "150"]) for i in (0, 1)]
        try:
            assert wait_until(lambda: all(incoming(cluster, i) == 1 for i in range(3)), timeout=8.0), \
                [incoming(cluster, i) for i in range(3)]
            # node2 drains: it answers the front's pings with 503 and leaves rotation, its call goes on.
            cluster.drain_node(2)
            cluster.wait_front_sees(2, active=False, timeout=5.0)
            during_drain = reports(place(cluster, 1, 1.0, env), timeout=30)
            assert len(during_drain) == 1 and during_drain[0]["answered"], during_drain
            assert by_node(cluster, during_drain[0]) in (0, 1)
            # node0 is lost.
            cluster.kill_node(0)
            killed = time.time()
            cluster.wait_front_sees(0, active=False, timeout=5.0)
            down_after = time.time() - killed
            # A new call now lands on the one node left in rotation, and is answered.
            again = reports(place(cluster, 1, 1.0, env), timeout=30)
            assert len(again) == 1 and again[0]["answered"] and by_node(cluster, again[0]) == 1, again
            done = reports(callers, timeout=30)
            drained_exit = cluster.wait_node_exit(2, 20.0)
            for w in writers:
                out, err = w.communicate(timeout=60)
                assert w.returncode == 0 and out.strip() == "150", err[-2000:]
            verified = cluster.verify_audit()
        finally:
            if callers.poll() is None:
                callers.kill()
        assert len(done) == 3 and all(r["answered"] for r in done), done
        calls = {by_node(cluster, r): r for r in done}
        assert sorted(calls) == [0, 1, 2], done
        print("cluster node loss:", json.dumps({"calls": calls, "down_after_s": down_after,
                                                "lost_ended_after_kill_s": calls[0]["ended_at"] - killed}))
        # node1's and the draining node2's calls went their whole 10 s and the caller hung up; node0's call was
        # ended by the front (BYE) within 3 s of the kill: up to 1 s to the next ping + 0.7 s ping timeout + the
        # dialog timer's tick.
        for i in (1, 2):
            assert calls[i]["by"] == "caller" and calls[i]["ended_at"] - calls[i]["answered_at"] >= 9.5, calls[i]
        assert calls[0]["by"] == "far end" and calls[0]["ended_at"] - killed <= 3.0, calls[0]
        assert down_after <= 5.0
        assert drained_exit == 0 and cluster.node_alive(1)
        # One chain: every row of both nodes in it, no fork, and it matches both nodes' signed checkpoints.
        found = re.search(r"audit trail intact: (\d+) rows.*matches (\d+) checkpoint", verified)
        assert found and int(found.group(1)) == 300 and int(found.group(2)) >= 2, verified


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not HAVE_KAMAILIO, reason="Kamailio is not installed (scripts/test installs it)")
@pytest.mark.skipif(can_make_namespaces() is not None, reason=str(can_make_namespaces()))
def test_new_calls_go_to_the_node_with_the_fewest_calls(tmp_path: Path) -> None:
    """One node carries a long call: the next calls, one after the other, all go to the other node (round robin
    would send every second one to the busy node)."""
    config, env = cluster_setup(tmp_path, nodes=2, prompt_s=20.0, drain_timeout_s=5.0)
    with Cluster(config) as cluster:
        long_call = place(cluster, 1, 15.0, env)
        try:
            assert wait_until(lambda: incoming(cluster, 0) + incoming(cluster, 1) == 1, timeout=8.0)
            busy = 0 if incoming(cluster, 0) == 1 else 1
            time.sleep(1.0)  # answered: its dialog is in the front's count
            short = [r for _ in range(3) for r in reports(place(cluster, 1, 1.0, env), timeout=30)]
            done = reports(long_call, timeout=40)
        finally:
            if long_call.poll() is None:
                long_call.kill()
        assert len(short) == 3 and all(r["answered"] for r in short), short
        assert [by_node(cluster, r) for r in short] == [1 - busy] * 3, short
        assert len(done) == 1 and done[0]["answered"] and by_node(cluster, done[0]) == busy, done
