"""The reliability suite compares the operator's firewall state before and after: traffic moves packet and byte
counters (iptables 1.8.11 of Debian 13 prints real ones on chain policies), which must not read as a changed rule,
while any other difference still must."""

from tests.reliability.harness import without_counters

BEFORE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:opsent1234abcd - [0:0]
-A INPUT -s 192.0.2.77/32 -p tcp -m tcp --dport 4242 -m comment --comment opsent1234abcd -j DROP
COMMIT"""

NFT = """table ip filter {
\tchain INPUT {
\t\ttype filter hook input priority filter; policy accept;
\t\tip saddr 192.0.2.77 tcp dport 4242 counter packets 0 bytes 0 drop
\t}
}"""


def test_counters_alone_are_no_difference():
    after = BEFORE.replace(":INPUT ACCEPT [0:0]", ":INPUT ACCEPT [293:30155]").replace(
        ":OUTPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [301:29876]")
    assert after != BEFORE and without_counters(after) == without_counters(BEFORE)
    assert without_counters(NFT.replace("packets 0 bytes 0", "packets 17 bytes 1020")) == without_counters(NFT)
    with_rule_counters = BEFORE.replace("-A INPUT", "[12:720] -A INPUT")
    assert without_counters(with_rule_counters) == without_counters(BEFORE.replace("-A INPUT", "[0:0] -A INPUT"))


def test_any_other_change_is_still_a_difference():
    assert without_counters(BEFORE.replace(":INPUT ACCEPT", ":INPUT DROP")) != without_counters(BEFORE)
    assert without_counters(BEFORE.replace("--dport 4242", "--dport 4243")) != without_counters(BEFORE)
    assert without_counters(BEFORE.replace("-j DROP\n", "-j DROP\n-A INPUT -j ACCEPT\n")) != without_counters(BEFORE)
    assert without_counters(NFT.replace(" drop", " accept")) != without_counters(NFT)
    # a number that is not a counter is kept: an address or port list in brackets is not touched
    assert without_counters("-A INPUT -m multiport --dports 1:2 [5:6]x") == "-A INPUT -m multiport --dports 1:2 [5:6]x"
