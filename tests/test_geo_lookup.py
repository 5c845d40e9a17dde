"""geo_info_from_ip_address() reads an address exactly as parse_ipv4() does (its own quicker
parser: one regex test and split_part), and looks every row up on its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import huntsman

TEXTS = ["20.53.203.50", " 20.53.203.50 ", "20.53.203.50/24", "20.53.203.50/0",
         "020.053.203.050", "20.53.203.050", "8.8.8.8", "8.8.8.8/32", "8.8.8.8/33",
         "256.1.1.1", "20.53.203", "20.53.203.50.1", "20.53.203.5a", "2O.53.203.50",
         "20..203.50", "-1.2.3.4", "+1.2.3.4", "1.2.3.4/", "1.2.3.4/-1", "1 .2.3.4",
         "1.2.3.4//8", "1234.1.1.1", "", " ", "10.0.0.1", "0.0.0.0", "255.255.255.255"]


@pytest.fixture(scope="module")
def db() -> Iterator[huntsman.Database]:
    with huntsman.connect() as d:
        yield d


def test_geo_reads_addresses_as_parse_ipv4_does(db: huntsman.Database) -> None:
    rows = ", ".join('"' + t + '"' for t in TEXTS)
    r = db.query(f"datatable(ip:string)[{rows}] | extend v = parse_ipv4(ip), "
                 "g = geo_info_from_ip_address(ip), "
                 "canonical = geo_info_from_ip_address(format_ipv4(parse_ipv4(ip)))")
    by_text = {ip: (v, g, canonical) for ip, v, g, canonical in r.rows}
    assert len(by_text) == len(TEXTS)
    for text, (v, g, canonical) in by_text.items():
        if v is None:
            assert g is None, text
        else:
            # the prefix does not matter: the bag is the one of the address itself
            assert g == canonical or "/" in text, text
    assert by_text["20.53.203.50"][1]["country"] == "Australia"
    assert by_text[" 20.53.203.50 "][1] == by_text["20.53.203.50"][1]
    assert by_text["020.053.203.050"][1] == by_text["20.53.203.50"][1]
    assert by_text["20.53.203.50/24"][1] == by_text["20.53.203.50"][1]
    assert by_text["8.8.8.8/33"][1] is None
    assert by_text["10.0.0.1"][1] is None


def test_geo_of_a_column_and_of_a_constant_agree(db: huntsman.Database) -> None:
    for text in ("20.53.203.50", "8.8.8.8", "256.1.1.1", "10.0.0.1"):
        const = db.query(f'print g = geo_info_from_ip_address("{text}")').rows[0][0]
        column = db.query(f'datatable(ip:string)["{text}"] '
                          "| project g = geo_info_from_ip_address(ip)").rows[0][0]
        assert const == column, text
