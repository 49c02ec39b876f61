"""bench/testbed.py's link shaping: the tc commands for a plain FIFO link and for
--small-first (two classes under one rate, small IPv4 and IPv6 packets into the
one served first), FIFOs bounded in bytes (--byte-fifo), and the packet count it
reads back from `tc -s`."""
from bench import testbed
from bench.testbed import SMALL_CLASS, class_packets, shaping_commands


def test_a_plain_link_is_one_htb_class_over_a_fifo_of_the_queue_given():
    commands = shaping_commands("eth0", 100, "htb", 0, 100)
    assert commands == [
        ["qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "10"],
        ["class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb",
         "rate", "100mbit", "ceil", "100mbit"],
        ["qdisc", "add", "dev", "eth0", "parent", "1:10", "handle", "10:", "pfifo", "limit", "100"]]


def test_small_first_shares_the_rate_and_sends_short_ipv4_and_ipv6_packets_first():
    commands = shaping_commands("p1", 100, "htb", 4096, 50, small_first=True)
    classes = {c[c.index("classid") + 1]: c for c in commands if c[0] == "class"}
    assert set(classes) == {"1:1", "1:10", SMALL_CLASS}
    assert classes["1:1"][classes["1:1"].index("rate") + 1] == "100mbit"   # the link's rate, once
    for classid in ("1:10", SMALL_CLASS):   # each may take all of it, guaranteed half
        c = classes[classid]
        assert c[c.index("parent") + 1] == "1:1"
        assert (c[c.index("rate") + 1], c[c.index("ceil") + 1]) == ("50mbit", "100mbit")
        assert c[c.index("burst") + 1] == "4096"
    assert classes[SMALL_CLASS][classes[SMALL_CLASS].index("prio") + 1] == "0"   # served first
    assert classes["1:10"][classes["1:10"].index("prio") + 1] == "1"
    leaves = [c for c in commands if c[:2] == ["qdisc", "add"] and "parent" in c]
    assert {c[c.index("parent") + 1] for c in leaves} == {"1:10", SMALL_CLASS}
    assert all(c[-3:] == ["pfifo", "limit", "50"] for c in leaves)
    filters = {c[c.index("protocol") + 1]: c for c in commands if c[0] == "filter"}
    # Under 1024 bytes: the length field's top six bits are zero (IPv4's total length at
    # byte 2, IPv6's payload length at byte 4).
    assert filters["ip"][-7:] == ["u16", "0x0000", "0xfc00", "at", "2", "flowid", SMALL_CLASS]
    assert filters["ipv6"][-7:] == ["u16", "0x0000", "0xfc00", "at", "4", "flowid", SMALL_CLASS]
    # The root's default class takes the rest: bulk data.
    assert commands[0][-2:] == ["default", "10"]


def test_a_byte_fifo_holds_the_queue_in_bytes_of_full_packets_whatever_gso_makes_of_them():
    for small_first in (False, True):
        commands = shaping_commands("eth0", 100, "htb", 0, 100, small_first=small_first, byte_fifo=True)
        leaves = [c for c in commands if c[:2] == ["qdisc", "add"] and "parent" in c]
        assert leaves and all(c[-3:] == ["bfifo", "limit", "151400"] for c in leaves)


def test_tbf_is_one_bucket_whose_queue_is_as_deep_as_the_fifo():
    assert shaping_commands("eth0", 25, "tbf", 0, 100) == [
        ["qdisc", "add", "dev", "eth0", "root", "handle", "1:", "tbf", "rate", "25mbit",
         "burst", "50000", "limit", "151400"]]


TC_STATS = """class htb 1:1 root rate 100Mbit ceil 100Mbit burst 1600b cburst 1600b
 Sent 70000000 bytes 50000 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
class htb 1:10 parent 1:1 leaf 10: prio 1 rate 50Mbit ceil 100Mbit burst 1600b cburst 1600b
 Sent 69000000 bytes 46000 pkt (dropped 3, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
class htb 1:20 parent 1:1 leaf 20: prio 0 rate 50Mbit ceil 100Mbit burst 1600b cburst 1600b
 Sent 1000000 bytes 4000 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
"""


def test_the_small_class_packets_are_read_from_tc_stats():
    assert class_packets(TC_STATS, SMALL_CLASS) == 4000
    assert class_packets(TC_STATS, "1:10") == 46000
    assert class_packets(TC_STATS, "1:30") == 0
    assert class_packets("", SMALL_CLASS) == 0


def test_byte_fifo_bounds_the_switch_ports_and_leaves_the_hosts_own_queues_in_packets():
    """A host's qdisc pushes back on its sockets rather than dropping what they send:
    bounding it in bytes too dropped 3 % of the supernode's packets at its own queue."""
    bed = testbed.Testbed(2, 100, byte_fifo=True, small_first=True)
    leaves = {port: [c[-3] for c in bed.shaping("eth0", port) if c[:2] == ["qdisc", "add"] and "parent" in c]
              for port in (False, True)}
    assert leaves == {False: ["pfifo", "pfifo"], True: ["bfifo", "bfifo"]}


def test_host_fq_hashes_flows_into_classes_of_their_own_served_in_turn():
    """--host-fq: one FIFO at a host's egress let TCP small queues starve slow flows
    (each turn of theirs waited for the whole FIFO); flows hashed into classes, each
    guaranteed an equal share and allowed the whole rate, served round robin."""
    commands = shaping_commands("eth0", 100, "htb", 0, 50, small_first=True, per_flow=True)
    classes = {c[c.index("classid") + 1]: c for c in commands if c[0] == "class"}
    flows = ["1:%x" % (0x100 + i) for i in range(testbed.HOST_FQ_BUCKETS)]
    assert set(classes) == {"1:1", "1:10", SMALL_CLASS} | set(flows)
    share = "%gkbit" % (100000 / (testbed.HOST_FQ_BUCKETS + 2))
    for classid in ["1:10", SMALL_CLASS] + flows:
        c = classes[classid]
        assert c[c.index("parent") + 1] == "1:1"
        assert (c[c.index("rate") + 1], c[c.index("ceil") + 1]) == (share, "100mbit")
        assert c[c.index("quantum") + 1] == str(testbed.HOST_FQ_QUANTUM)
        assert c[c.index("prio") + 1] == ("0" if classid == SMALL_CLASS else "1")
    leaves = {c[c.index("parent") + 1]: c for c in commands if c[:2] == ["qdisc", "add"] and "parent" in c}
    assert set(leaves) == {"1:10", SMALL_CLASS} | set(flows)
    assert all(c[-3:] == ["pfifo", "limit", "50"] for c in leaves.values())
    assert leaves["1:13f"][leaves["1:13f"].index("handle") + 1] == "13f:"
    filters = [c for c in commands if c[0] == "filter"]
    # small packets first, whatever their flow: their filters have the lowest priorities
    assert [f[f.index("flowid") + 1] for f in filters[:2]] == [SMALL_CLASS, SMALL_CLASS]
    for protocol, table, ports in (("ip", "2", "20"), ("ipv6", "3", "40")):
        mine = [f for f in filters[2:] if f[f.index("protocol") + 1] == protocol]
        assert mine[0][-5:] == ["handle", table + ":", "u32", "divisor", "64"]
        # TCP, hashed on bits 1-6 of the destination port (Linux connects from even ports)
        assert mine[1][-9:] == ["6", "0xff", "hashkey", "mask", "0x0000007e", "at", ports, "link",
                                table + ":"]
        buckets = mine[2:]
        assert [b[b.index("ht") + 1] for b in buckets] == ["%s:%x:" % (table, i) for i in range(64)]
        assert [b[-1] for b in buckets] == flows
    assert commands[0][-2:] == ["default", "10"]


def test_without_small_first_host_fq_has_no_small_class_and_the_switch_ports_none():
    commands = shaping_commands("eth0", 100, "htb", 0, 100, per_flow=True)
    classes = {c[c.index("classid") + 1] for c in commands if c[0] == "class"}
    assert SMALL_CLASS not in classes and len(classes) == 2 + testbed.HOST_FQ_BUCKETS
    bed = testbed.Testbed(3, 100, host_fq=True, small_first=True)   # (names only: nothing made)
    assert len([c for c in bed.shaping("eth0", switch_port=False) if c[0] == "class"]) == 3 + 64
    port = bed.shaping("p1", switch_port=True)   # a host's download: the switch's one FIFO
    assert not any("hashkey" in c for c in port) and len([c for c in port if c[0] == "class"]) == 3
