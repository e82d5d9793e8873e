"""The pure nft ruleset builder: every shape a network fault can take, checked as text and by the real ``nft``.

The text checks pin the shapes (directions, loss, timeouts, exemptions, address families); the ``nft --check``
checks prove the kernel accepts every one of them. Those run ``nft`` inside a throw-away network namespace
(``unshare --net``), so nothing on this machine's own firewall is ever read or touched.
"""

import itertools
import os
import re
import shutil
import subprocess

import pytest

from chaosscheduler.faults import rules
from chaosscheduler.faults.rules import EVERYTHING, build_ruleset, split_addresses, table_name, tables_in_ruleset


def _chain(text: str, name: str) -> str:
    """The body of chain ``name`` in a ruleset built by build_ruleset ("" if absent)."""
    match = re.search(r"    chain %s \{\n(.*?)\n    \}" % name, text, re.S)
    return match.group(1) if match else ""


def _set_line(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith(f"set {name} "))


# ---------------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("fault_id", ["f0123456789a", "a", "0" * 32, "abc123"])
def test_table_name_is_prefixed_fault_id(fault_id):
    assert table_name(fault_id) == "chaosscheduler_" + fault_id


@pytest.mark.parametrize("fault_id", ["", "F123", "f-12", "f_12", "f 12", "f;drop", "../x", "a" * 33, "f\n1",
                                      "tablé"])
def test_table_name_refuses_bad_fault_ids(fault_id):
    with pytest.raises(ValueError, match="fault id"):
        table_name(fault_id)


@pytest.mark.parametrize("fault_id", ["", "F1", "x;flush ruleset", "a" * 33])
def test_build_ruleset_refuses_bad_fault_ids(fault_id):
    with pytest.raises(ValueError, match="fault id"):
        build_ruleset(fault_id, ["198.18.2.1"])


# ---------------------------------------------------------------------------------------------------- directions
def test_both_directions_drop_output_to_and_input_from_peers():
    text = build_ruleset("f1", ["198.18.2.1"], "both")
    assert text.startswith("table inet chaosscheduler_f1 {\n") and text.endswith("}\n")
    out, inp = _chain(text, "out"), _chain(text, "in")
    assert "type filter hook output priority -200; policy accept;" in out
    assert "ip daddr @peers4 drop" in out and "ip6 daddr @peers6 drop" in out
    assert "type filter hook input priority -200; policy accept;" in inp
    assert "ip saddr @peers4 drop" in inp and "ip6 saddr @peers6 drop" in inp


def test_direction_to_only_cuts_outgoing_traffic():
    text = build_ruleset("f1", ["198.18.2.1"], "to")
    assert _chain(text, "out") and not _chain(text, "in")
    assert "hook input" not in text and "saddr" not in text


def test_direction_from_only_cuts_incoming_traffic():
    text = build_ruleset("f1", ["198.18.2.1"], "from")
    assert _chain(text, "in") and not _chain(text, "out")
    assert "hook output" not in text and "daddr" not in text


@pytest.mark.parametrize("direction", ["", "in", "out", "BOTH", "both ", None, 1])
def test_refuses_unknown_direction(direction):
    with pytest.raises(ValueError, match="direction"):
        build_ruleset("f1", ["198.18.2.1"], direction)


@pytest.mark.parametrize("direction", ["both", "to", "from"])
def test_loopback_is_accepted_before_any_drop(direction):
    text = build_ruleset("f1", EVERYTHING, direction, exempt_tcp_ports=[22])
    for chain in ("out", "in"):
        body = _chain(text, chain)
        if not body:
            continue
        lines = [line.strip() for line in body.splitlines()]
        lo = next(i for i, line in enumerate(lines) if line.endswith('"lo" accept'))
        drops = [i for i, line in enumerate(lines) if line.endswith("drop")]
        assert drops and lo < min(drops)


# ---------------------------------------------------------------------------------------------------- loss
def test_full_loss_is_a_plain_drop():
    text = build_ruleset("f1", ["198.18.2.1"], loss=1.0)
    assert "numgen" not in text
    assert "ip daddr @peers4 drop" in text


@pytest.mark.parametrize("loss, threshold", [(0.3, 3000), (0.5, 5000), (0.0001, 1), (0.99995, 10000),
                                             (0.123456, 1235), (0.9999, 9999)])
def test_partial_loss_uses_a_random_threshold(loss, threshold):
    text = build_ruleset("f1", ["198.18.2.1"], loss=loss)
    if threshold >= rules.LOSS_SCALE:
        assert "numgen" not in text and "@peers4 drop" in text
    else:
        assert f"ip daddr @peers4 numgen random mod 10000 < {threshold} drop" in text
        assert f"ip saddr @peers4 numgen random mod 10000 < {threshold} drop" in text
        assert f"ip6 daddr @peers6 numgen random mod 10000 < {threshold} drop" in text


@pytest.mark.parametrize("loss", [0, 0.0, -0.1, 1.0001, 2, float("nan"), float("inf"), -float("inf")])
def test_refuses_loss_outside_zero_one(loss):
    with pytest.raises(ValueError, match="loss"):
        build_ruleset("f1", ["198.18.2.1"], loss=loss)


@pytest.mark.parametrize("loss", ["0.3", None, [0.3]])
def test_refuses_loss_that_is_not_a_number(loss):
    with pytest.raises((ValueError, TypeError)):
        build_ruleset("f1", ["198.18.2.1"], loss=loss)


# ---------------------------------------------------------------------------------------------------- timeout
def test_without_timeout_sets_have_no_timeout_flag():
    text = build_ruleset("f1", ["198.18.2.1", "fd00::1"], timeout=None)
    assert "timeout" not in text
    assert "flags interval;" in _set_line(text, "peers4")
    assert "flags interval;" in _set_line(text, "peers6")


@pytest.mark.parametrize("seconds, text", [(2, "2000ms"), (1.5, "1500ms"), (0.0004, "1ms"), (60, "60000ms"),
                                           (0.0126, "13ms"), (86400, "86400000ms")])
def test_timeout_is_on_every_element_in_milliseconds(seconds, text):
    ruleset = build_ruleset("f1", ["198.18.2.1", "198.18.16.0/24", "fd00::1"], timeout=seconds)
    peers4, peers6 = _set_line(ruleset, "peers4"), _set_line(ruleset, "peers6")
    assert "flags interval, timeout;" in peers4 and "flags interval, timeout;" in peers6
    assert f"198.18.2.1 timeout {text}" in peers4
    assert f"198.18.16.0/24 timeout {text}" in peers4
    assert f"fd00::1 timeout {text}" in peers6
    assert ruleset.count(f"timeout {text}") == 3


def test_an_empty_family_set_has_no_elements_but_keeps_the_timeout_flag():
    text = build_ruleset("f1", ["198.18.2.1"], timeout=3)
    peers6 = _set_line(text, "peers6")
    assert "elements" not in peers6 and "flags interval, timeout;" in peers6


# ---------------------------------------------------------------------------------------------------- exempt ports
def test_exempt_ports_are_accepted_before_the_drops_in_both_chains():
    text = build_ruleset("f1", EVERYTHING, "both", exempt_tcp_ports=[2222, 22, "22"])
    out = [line.strip() for line in _chain(text, "out").splitlines()]
    inp = [line.strip() for line in _chain(text, "in").splitlines()]
    assert "tcp sport { 22, 2222 } accept" in out
    assert "tcp dport { 22, 2222 } accept" in inp
    assert out.index("tcp sport { 22, 2222 } accept") < out.index("ip daddr @peers4 drop")
    assert inp.index("tcp dport { 22, 2222 } accept") < inp.index("ip saddr @peers4 drop")


def test_no_exempt_ports_means_no_port_rule():
    assert "sport" not in build_ruleset("f1", EVERYTHING) and "dport" not in build_ruleset("f1", EVERYTHING)


@pytest.mark.parametrize("ports", [[0], [65536], [-22], [22, 70000]])
def test_refuses_exempt_ports_out_of_range(ports):
    with pytest.raises(ValueError, match="ports"):
        build_ruleset("f1", EVERYTHING, exempt_tcp_ports=ports)


@pytest.mark.parametrize("ports", [["ssh"], ["22; flush ruleset"], [None]])
def test_refuses_exempt_ports_that_are_not_numbers(ports):
    with pytest.raises((ValueError, TypeError)):
        build_ruleset("f1", EVERYTHING, exempt_tcp_ports=ports)


# ---------------------------------------------------------------------------------------------------- addresses
def test_addresses_are_split_by_family_canonical_and_deduplicated():
    v4, v6 = split_addresses(["198.18.2.1", "198.18.2.1/32", "10.1.2.3/8", "fd00:0::1", "FD00::1/128",
                              "2001:db8::/32", "198.18.2.2"])
    assert v4 == ["10.0.0.0/8", "198.18.2.1", "198.18.2.2"]
    assert v6 == ["2001:db8::/32", "fd00::1"]


def test_ipv4_and_ipv6_land_in_their_own_sets():
    text = build_ruleset("f1", ["198.18.2.1", "fd00::7"])
    assert "198.18.2.1" in _set_line(text, "peers4") and "fd00::7" not in _set_line(text, "peers4")
    assert "fd00::7" in _set_line(text, "peers6") and "198.18.2.1" not in _set_line(text, "peers6")
    assert "type ipv4_addr;" in _set_line(text, "peers4") and "type ipv6_addr;" in _set_line(text, "peers6")


def test_isolation_covers_every_address_of_both_families():
    text = build_ruleset("f1", EVERYTHING)
    assert "elements = { 0.0.0.0/0 }" in _set_line(text, "peers4")
    assert "elements = { ::/0 }" in _set_line(text, "peers6")


def test_only_ipv6_peers_leave_the_ipv4_set_empty():
    text = build_ruleset("f1", ["fd00::1"])
    assert "elements" not in _set_line(text, "peers4")
    assert "elements = { fd00::1 }" in _set_line(text, "peers6")


@pytest.mark.parametrize("addresses", [[], (), [""], ["not-an-ip"], ["198.18.2.1; flush ruleset"],
                                       ["198.18.2.1 } ; table ip x {"], ["300.1.1.1"], ["198.18.2.1/33"],
                                       ["fd00::1/129"], ["master-1"]])
def test_refuses_empty_or_bad_addresses(addresses):
    with pytest.raises(ValueError):
        build_ruleset("f1", addresses)


def test_no_address_error_says_why():
    with pytest.raises(ValueError, match="at least one peer address"):
        build_ruleset("f1", [])


# ---------------------------------------------------------------------------------------------------- listing
def test_tables_in_ruleset_finds_only_our_tables():
    listing = ("table inet chaosscheduler_f1a2b3\n"
               "table ip filter\n"
               "table inet operator_own\n"
               "table inet chaosschedulerx\n"
               "\n"
               "table ip6 chaosscheduler_f99\n"
               "table inet chaosscheduler_f1a2b3 {\n"
               "  table inet chaosscheduler_fzz extra\n"
               "table inet chaosscheduler_f777\n")
    # we only ever create inet tables: an ip6 table of that name is not ours to delete
    assert tables_in_ruleset(listing) == ["chaosscheduler_f1a2b3", "chaosscheduler_f777"]


def test_tables_in_ruleset_of_an_empty_listing():
    assert tables_in_ruleset("") == []
    assert tables_in_ruleset("table inet filter\ntable ip nat\n") == []


def test_the_built_table_is_found_by_the_listing_parser():
    text = build_ruleset("fabc", ["198.18.2.1"])
    header = text.splitlines()[0].rstrip(" {")
    assert tables_in_ruleset(header + "\n") == [table_name("fabc")]


# ---------------------------------------------------------------------------------------------------- real nft
def _sandbox() -> list:
    """argv prefix that runs a command in a throw-away network namespace, or skip."""
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (apt-get install nftables)")
    if shutil.which("unshare") is None:
        pytest.skip("unshare is missing (util-linux)")
    prefixes = [["unshare", "--net"]] if os.geteuid() == 0 else []
    prefixes.append(["unshare", "--user", "--map-root-user", "--net"])
    for prefix in prefixes:
        probe = subprocess.run(prefix + ["nft", "list", "tables"], capture_output=True, text=True, timeout=20)
        if probe.returncode == 0:
            return prefix
    pytest.skip("cannot run nft in a throw-away network namespace here")


@pytest.fixture(scope="module")
def sandbox():
    return _sandbox()


def _nft_check(sandbox: list, text: str) -> subprocess.CompletedProcess:
    return subprocess.run(sandbox + ["nft", "--check", "-f", "-"], input=text, capture_output=True, text=True,
                          timeout=20)


ADDRESS_SETS = {"v4": ["198.18.2.1", "198.18.2.2", "198.18.1.0/24"], "v6": ["fd00::1", "2001:db8::/48"],
                "mixed": ["198.18.2.1", "fd00::1"], "everything": EVERYTHING}
SHAPES = list(itertools.product(["both", "to", "from"], [1.0, 0.3, 0.0001], [None, 2.5, 0.001],
                                [(), (22, 2222)], sorted(ADDRESS_SETS)))


@pytest.mark.parametrize("direction, loss, timeout, ports, addresses", SHAPES,
                         ids=["-".join(map(str, s)) for s in SHAPES])
def test_nft_accepts_every_shape(sandbox, direction, loss, timeout, ports, addresses):
    text = build_ruleset("f0a1b2c3d4e5", ADDRESS_SETS[addresses], direction, loss, timeout, ports)
    result = _nft_check(sandbox, text)
    assert result.returncode == 0, f"nft refused:\n{text}\n{result.stderr}"


def test_nft_check_does_reject_a_broken_ruleset(sandbox):
    """The check above is meaningful: nft does refuse a ruleset that is wrong."""
    text = build_ruleset("f1", ["198.18.2.1"]).replace("ipv4_addr", "ipv5_addr")
    assert _nft_check(sandbox, text).returncode != 0


def test_loaded_ruleset_is_listed_as_ours_and_deleted_by_name(sandbox):
    """Load a ruleset for real in a throw-away namespace, next to an operator's table: the listing parser finds
    only ours, and deleting our table by name leaves the operator's table untouched."""
    ours = build_ruleset("fdeadbeef", ["198.18.2.1", "fd00::1"], "both", 0.3, 30, [22])
    operator = "table inet operator_own {\n chain c {\n  type filter hook input priority 0; policy accept;\n" \
               "  ip saddr 192.0.2.1 drop\n }\n}\n"
    script = ("set -e\n"
              "nft -f - <<'EOF'\n" + operator + ours + "EOF\n"
              "before=$(nft list table inet operator_own)\n"
              "echo '--- tables'\nnft list tables\n"
              "nft delete table inet " + table_name("fdeadbeef") + "\n"
              "echo '--- after'\nnft list tables\n"
              "[ \"$before\" = \"$(nft list table inet operator_own)\" ] && echo SAME\n")
    result = subprocess.run(sandbox + ["sh", "-c", script], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split("--- tables\n")[1].split("--- after\n")
    assert tables_in_ruleset(before) == ["chaosscheduler_fdeadbeef"]
    assert "table inet operator_own" in before
    assert tables_in_ruleset(after) == []
    assert "table inet operator_own" in after
    assert after.rstrip().endswith("SAME")
