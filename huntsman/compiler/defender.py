"""Defender's built-in Advanced Hunting functions, computed from the store's own tables.

* ``T | invoke FileProfile(x, y)`` — enriches the first ``y`` rows (1–1000, default 100) of ``T``
  by the file hash in column ``x`` (``SHA1`` by default, or ``SHA256``,
  ``InitiatingProcessSHA1``, ``InitiatingProcessSHA256``).
* ``T | invoke DeviceFromIP(x, y)`` — the devices that held the IP address in column ``x``
  (``IP`` by default) at time ``y`` (default: now).
* ``AssignedIPAddresses(x, y)`` — the IP addresses device ``x`` (id or name) held at ``y``.
* ``T | invoke SeenBy(x)`` — the onboarded devices that talked to the devices of column ``x``
  (``DeviceId`` by default).

Each is a KQL template compiled like any query (so every backend runs it and the time window
applies to the tables it reads); the Python here checks the arguments and fills the template.
IP assignments come from ``DeviceNetworkInfo``: each report of a device's adapter holds its
``IPAddresses`` from the report's time until that adapter's next report.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from huntsman.compiler.scope import Env, Rel, RelBinding, ScalarBinding
from huntsman.compiler.stored import map_positions
from huntsman.kql import ast as A
from huntsman.kql.functions.sql import literal
from huntsman.kql.parser import parse

if TYPE_CHECKING:
    from huntsman.compiler.compiler import Compiler

FILE_ID_COLUMNS = ("SHA1", "SHA256", "InitiatingProcessSHA1", "InitiatingProcessSHA256")
PE_EXTENSIONS = ("exe", "dll", "sys", "scr", "cpl", "ocx", "drv", "efi", "com", "mui")

# System.Net.NetworkInformation.NetworkInterfaceType: the numbers AssignedIPAddresses() returns
NETWORK_INTERFACE_TYPES = {
    "Unknown": 1, "Ethernet": 6, "TokenRing": 9, "Fddi": 15, "BasicIsdn": 20,
    "PrimaryIsdn": 21, "Ppp": 23, "Loopback": 24, "Ethernet3Megabit": 26, "Slip": 28,
    "Atm": 37, "GenericModem": 48, "FastEthernetT": 62, "Isdn": 63, "FastEthernetFx": 69,
    "Wireless80211": 71, "AsymmetricDsl": 94, "RateAdaptDsl": 95, "SymmetricDsl": 96,
    "VeryHighSpeedDsl": 97, "IPOverAtm": 114, "GigabitEthernet": 117, "Tunnel": 131,
    "MultiRateSymmetricDsl": 143, "HighPerformanceSerialBus": 144, "Wman": 237,
    "Wwanpp": 243, "Wwanpp2": 244,
}


def _ipint_template(at: bool | None) -> str:
    """IP assignment intervals from DeviceNetworkInfo: those current at ``__at`` (``at``
    True), the latest ones (False) or all of them (None)."""
    keep = "Timestamp <= __at and (isnull(__until) or __at < __until)" if at \
        else "isnull(__until)" if at is False else "true"
    return f"""DeviceNetworkInfo
| sort by DeviceId asc, NetworkAdapterName asc, Timestamp asc
| extend __until = iff(next(DeviceId) == DeviceId
    and next(NetworkAdapterName) == NetworkAdapterName, next(Timestamp), datetime(null))
| where {keep}
| mv-expand __ipobj = parse_json(IPAddresses)
| extend IPAddress = tostring(__ipobj.IPAddress), IPType = tostring(__ipobj.AddressType)
| where isnotempty(IPAddress)"""


# ---------------------------------------------------------------- FileProfile

_OBSERVED = [
    # (table, column prefix of the file, publisher column, product column, runs as code)
    ("DeviceProcessEvents", "", "ProcessVersionInfoCompanyName",
     "ProcessVersionInfoProductName", "true"),
    ("DeviceFileEvents", "", None, None, "false"),
    ("DeviceImageLoadEvents", "", None, None, "true"),
    ("DeviceProcessEvents", "InitiatingProcess", "InitiatingProcessVersionInfoCompanyName",
     "InitiatingProcessVersionInfoProductName", "true"),
    ("DeviceFileEvents", "InitiatingProcess", "InitiatingProcessVersionInfoCompanyName",
     "InitiatingProcessVersionInfoProductName", "true"),
    ("DeviceImageLoadEvents", "InitiatingProcess", "InitiatingProcessVersionInfoCompanyName",
     "InitiatingProcessVersionInfoProductName", "true"),
    ("DeviceEvents", "InitiatingProcess", "InitiatingProcessVersionInfoCompanyName",
     "InitiatingProcessVersionInfoProductName", "true"),
]

# (output column, Kusto type, value for an enriched row) — in the documented order
_PROFILE_COLUMNS = [
    ("SHA1", "string", "__p_SHA1"),
    ("SHA256", "string", "__p_SHA256"),
    ("MD5", "string", "__p_MD5"),
    ("FileSize", "long", "__p_FileSize"),
    ("GlobalPrevalence", "long", "__p_Prevalence"),
    ("GlobalFirstSeen", "datetime", "__p_FirstSeen"),
    ("GlobalLastSeen", "datetime", "__p_LastSeen"),
    ("Signer", "string", "__c_Signer"),
    ("Issuer", "string", "__c_Issuer"),
    ("SignerHash", "string", "__c_SignerHash"),
    ("IsCertificateValid", "bool", "__c_IsTrusted"),
    ("IsRootSignerMicrosoft", "bool", "__c_IsRootSignerMicrosoft"),
    ("SignatureState", "string",
     'case(__c_IsSigned == true and __c_IsTrusted == true, "SignedValid", '
     '__c_IsSigned == true, "SignedInvalid", __c_IsSigned == false, "Unsigned", "Unknown")'),
    ("IsExecutable", "bool",
     f"iff(isnull(__p_Runs), bool(null), __p_Runs == 1 or tolower(__p_FileName) matches regex "
     f"@'\\.({'|'.join(PE_EXTENSIONS)})$')"),
    ("ThreatName", "string", "__t_ThreatName"),
    ("Publisher", "string", "__p_Publisher"),
    ("SoftwareName", "string", "__p_SoftwareName"),
    ("ProfileAvailability", "string",
     'iff(isnotnull(__p_Prevalence) or isnotnull(__c_IsSigned), "Available", "Missing")'),
]

_EMPTY = {"string": '""', "long": "long(null)", "datetime": "datetime(null)",
          "bool": "bool(null)"}


def _file_profile_template(key_col: str, kind: str, input_cols: list[str]) -> str:
    branches = []
    for table, prefix, publisher, product, runs in _OBSERVED:
        p = prefix
        name = f"{p}FileName" if p else "FileName"
        branches.append(
            f"({table} | where {p}{kind} in (__keys) | project Timestamp, DeviceId, "
            f"__k = {p}{kind}, __SHA1 = {p}SHA1, __SHA256 = {p}SHA256, __MD5 = {p}MD5, "
            f"__FileSize = {p}FileSize, __FileName = {name}, "
            f"__Publisher = {publisher or chr(34) * 2}, __Product = {product or chr(34) * 2}, "
            f"__Runs = {runs})")
    finals = []
    for name, ktype, value in _PROFILE_COLUMNS:
        otherwise = f"['{name}']" if name in input_cols else _EMPTY[ktype]
        finals.append(f"['{name}'] = iff(__enriched, {value}, {otherwise})")
    # materialized: the row numbers must be the same wherever the rows are read, and the
    # few keys are read by every branch of the profile. A text of the profile is the greatest
    # one seen (a plain max: "" is the least text, so any non-empty value wins, and the same
    # one every time)
    return f"""let __rows = materialize(__in
| serialize __fp_row = row_number()
| extend __fp_key = tolower(tostring(['{key_col}'])));
let __keys = materialize(__rows | where __fp_row <= __limit and isnotempty(__fp_key)
| distinct __fp_key);
let __prof = union {", ".join(branches)}
| summarize __p_SHA1 = max(__SHA1), __p_SHA256 = max(__SHA256), __p_MD5 = max(__MD5),
    __p_FileSize = max(__FileSize), __p_Prevalence = dcount(DeviceId),
    __p_FirstSeen = min(Timestamp), __p_LastSeen = max(Timestamp),
    __p_Publisher = max(__Publisher), __p_SoftwareName = max(__Product),
    __p_FileName = max(__FileName), __p_Runs = max(toint(__Runs))
    by __fp_key = tolower(__k);
let __certkeys = union (__prof | project __s = __p_SHA1), (__keys | where "{kind}" == "SHA1"
    | project __s = __fp_key);
let __cert = DeviceFileCertificateInfo
| where SHA1 in (__certkeys)
| summarize arg_max(Timestamp, IsSigned, IsTrusted, Signer, Issuer, SignerHash,
    IsRootSignerMicrosoft) by __c_key = tolower(SHA1)
| project __c_key, __c_IsSigned = IsSigned, __c_IsTrusted = IsTrusted, __c_Signer = Signer,
    __c_Issuer = Issuer, __c_SignerHash = SignerHash,
    __c_IsRootSignerMicrosoft = IsRootSignerMicrosoft;
let __threat = DeviceEvents
| where ActionType == "AntivirusDetection" and {kind} in (__keys)
| extend __t_ThreatName = tostring(parse_json(AdditionalFields).ThreatName)
| where isnotempty(__t_ThreatName)
| summarize arg_max(Timestamp, __t_ThreatName) by __t_key = tolower({kind})
| project __t_key, __t_ThreatName;
__rows
| join kind=leftouter __prof on __fp_key
| extend __c_key = iff(isnotempty(__p_SHA1), tolower(__p_SHA1),
    iff("{kind}" == "SHA1", __fp_key, ""))
| join kind=leftouter __cert on __c_key
| extend __t_key = __fp_key
| join kind=leftouter __threat on __t_key
| extend __enriched = __fp_row <= __limit and isnotempty(__fp_key)
| extend {", ".join(finals)}
| project-away __*"""


def file_profile(c: Compiler, rel: Rel, op: A.Invoke, env: Env) -> Rel:
    args = op.args
    if len(args) > 2:
        raise c.semantic_error(f"FileProfile() expects at most 2 arguments (file ID column, "
                               f"record limit), got {len(args)}", op.pos)
    key_col = "SHA1"
    if args:
        key_col = _column_arg(c, rel, args[0], "FileProfile", FILE_ID_COLUMNS)
    limit = 100
    if len(args) > 1:
        a = c.scalar(None, env).compile(args[1])
        if a.type not in ("long", "int") or not a.is_const or a.const is None \
                or not 1 <= a.const <= 1000:
            raise c.semantic_error("FileProfile(): the record limit must be a whole number "
                                   "from 1 to 1000", args[1].pos or op.pos)
        limit = int(a.const)
    elif rel.col(key_col) is None:
        raise c.semantic_error(f"FileProfile(): the input has no '{key_col}' column; name the "
                               f"file ID column, e.g. invoke FileProfile(SHA256)", op.pos)
    kind = "SHA256" if key_col.endswith("SHA256") else "SHA1"
    text = _file_profile_template(key_col, kind, rel.names())
    return _run_template(c, text, op.pos, rel, {"__limit": (limit, "long")})


def _column_arg(c: Compiler, rel: Rel, arg: A.Expr, fn_name: str,
                allowed: tuple[str, ...] | None = None) -> str:
    """A column of the input named by the argument (``SHA256`` or ``"SHA256"``)."""
    if isinstance(arg, A.Name):
        name = arg.name
    elif isinstance(arg, A.Literal) and arg.type == "string":
        name = str(arg.value)
    else:
        raise c.semantic_error(f"{fn_name}(): the first argument must name a column of the "
                               f"input", arg.pos)
    if allowed is not None and name not in allowed:
        raise c.semantic_error(f"{fn_name}(): the file ID column must be one of "
                               f"{', '.join(allowed)}, not '{name}'", arg.pos)
    if rel.col(name) is None:
        raise c.semantic_error(f"{fn_name}(): the input has no column named '{name}'", arg.pos)
    return name


def _datetime_arg(c: Compiler, env: Env, arg: A.Expr, fn_name: str) -> Any:
    a = c.scalar(None, env).compile(arg)
    if a.type != "datetime":
        raise c.semantic_error(f"{fn_name}(): the time argument must be a datetime, "
                               f"not {a.type}", arg.pos)
    return a


# ---------------------------------------------------------------- IP functions


def device_from_ip(c: Compiler, rel: Rel, op: A.Invoke, env: Env) -> Rel:
    args = op.args
    if len(args) > 2:
        raise c.semantic_error(f"DeviceFromIP() expects at most 2 arguments (IP column, "
                               f"time), got {len(args)}", op.pos)
    if args:
        ip_col = _column_arg(c, rel, args[0], "DeviceFromIP")
    elif rel.col("IP") is None:
        raise c.semantic_error("DeviceFromIP(): the input has no 'IP' column (e.g. "
                               "| project IP = LocalIP | invoke DeviceFromIP())", op.pos)
    else:
        ip_col = "IP"
    scalars: dict[str, Any] = {}
    if len(args) > 1:
        scalars["__at"] = _datetime_arg(c, env, args[1], "DeviceFromIP")
    text = f"""let __ipint = {_ipint_template(len(args) > 1)};
__in
| where isnotempty(['{ip_col}'])
| distinct __ip = tostring(['{ip_col}'])
| join kind=inner (__ipint | project __ip = IPAddress, DeviceId) on __ip
| distinct IP = __ip, DeviceId"""
    return _run_template(c, text, op.pos, rel, scalars)


def assigned_ip_addresses(c: Compiler, node: A.TabularCall | A.TableRef, env: Env) -> Rel:
    args = node.args if isinstance(node, A.TabularCall) else []
    if not 1 <= len(args) <= 2:
        raise c.semantic_error("AssignedIPAddresses() expects 1 or 2 arguments (device ID or "
                               f"name, time), got {len(args)}", node.pos)
    device = c.scalar(None, env).compile(args[0])
    if device.type != "string":
        raise c.semantic_error(f"AssignedIPAddresses(): the device must be a DeviceId or "
                               f"DeviceName string, not {device.type}", args[0].pos)
    scalars: dict[str, Any] = {"__device": device}
    if len(args) > 1:
        scalars["__at"] = _datetime_arg(c, env, args[1], "AssignedIPAddresses")
    types = ", ".join(f'"{k}": {v}' for k, v in NETWORK_INTERFACE_TYPES.items())
    text = f"""let __types = dynamic({{{types}}});
{_ipint_template(len(args) > 1)}
| where DeviceId =~ __device or DeviceName =~ __device
| project Timestamp, IPAddress, IPType,
    NetworkAdapterType = toint(coalesce(toint(__types[NetworkAdapterType]),
        toint(NetworkAdapterType))),
    ConnectedNetworks = parse_json(ConnectedNetworks)"""
    return _run_template(c, text, node.pos, None, scalars)


def seen_by(c: Compiler, rel: Rel, op: A.Invoke, env: Env) -> Rel:
    args = op.args
    if len(args) > 1:
        raise c.semantic_error(f"SeenBy() expects at most 1 argument (the device ID column), "
                               f"got {len(args)}", op.pos)
    scalars: dict[str, Any] = {}
    if args and isinstance(args[0], A.Literal) and args[0].type == "string" \
            and rel.col(str(args[0].value)) is None:
        # a device ID value rather than a column of the input
        scalars["__device"] = c.scalar(None, env).compile(args[0])
        targets = "print __dev = __device"
    else:
        dev_col = _column_arg(c, rel, args[0], "SeenBy") if args else "DeviceId"
        if rel.col(dev_col) is None:
            raise c.semantic_error("SeenBy(): the input has no 'DeviceId' column", op.pos)
        targets = f"__in | distinct __dev = tostring(['{dev_col}'])"
    text = f"""let __targets = {targets};
let __ipint = {_ipint_template(None)};
let __held = __ipint
| where DeviceId in (__targets)
| project __dev = DeviceId, __ip = IPAddress, __from = Timestamp, __until;
DeviceNetworkEvents
| where isnotempty(RemoteIP)
| project __obs = DeviceId, __ip = RemoteIP, __t = Timestamp
| join kind=inner __held on __ip
| where __t >= __from and (isnull(__until) or __t < __until) and __obs != __dev
| distinct DeviceId = __obs"""
    return _run_template(c, text, op.pos, rel, scalars)


# ---------------------------------------------------------------- dispatch

INVOKE_FUNCTIONS: dict[str, Callable[[Compiler, Rel, A.Invoke, Env], Rel]] = {
    "FileProfile": file_profile,
    "DeviceFromIP": device_from_ip,
    "SeenBy": seen_by,
}
"""Defender functions used as ``T | invoke F(...)``."""

TABLE_FUNCTIONS: dict[str, Callable[[Compiler, Any, Env], Rel]] = {
    "AssignedIPAddresses": assigned_ip_addresses,
}
"""Defender functions that return a table by themselves (``F(...)``)."""

DEFENDER_FUNCTIONS = (*INVOKE_FUNCTIONS, *TABLE_FUNCTIONS)


def _run_template(c: Compiler, text: str, pos: int, rel: Rel | None,
                  scalars: dict[str, Any]) -> Rel:
    """Compile a template in a scope of its own (the caller's ``let`` names cannot change
    which tables it reads); every error points at the call."""
    # a fresh copy (the compiler may annotate its tree): unpickling is ~10x faster than deepcopy
    script: A.Script = pickle.loads(_parse_template(text, pos))
    env = Env()
    if rel is not None:
        env.names["__in"] = RelBinding(rel)
    for name, v in scalars.items():
        if isinstance(v, tuple):
            value, ktype = v
            env.names[name] = ScalarBinding(literal(value, ktype), ktype, value)
        else:
            env.names[name] = ScalarBinding(v.sql, v.type, v.const)
    last: A.Tabular | None = None
    for st in script.statements:
        if isinstance(st, A.QueryStatement):
            assert isinstance(st.query, A.Tabular)
            last = st.query
        else:
            c.statement(st, env)
    assert last is not None
    return c.tabular(last, env)


@functools.lru_cache(maxsize=256)
def _parse_template(text: str, pos: int) -> bytes:
    """The parsed template with every position set to the call's, pickled."""
    script = parse(text)
    map_positions(script, lambda _: pos)
    return pickle.dumps(script, protocol=pickle.HIGHEST_PROTOCOL)
