"""Value parsers: one YAML value to one model value, or ``ValueError(message)``.

Each ``as_*`` function takes whatever the YAML held and returns the model's
value (canonical addresses, lower-case names, seconds, ...) or raises
``ValueError`` with the operator-facing message (never anything else).
:func:`parse_listen_address` and :func:`parse_host_port` are shared with
the command line; :func:`kind_of`, :func:`suggest` and :func:`one_of` word
the messages.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import re
from typing import Any, Collection, Mapping, Optional, Sequence, Tuple, Union

from opengslb.config.durations import format_duration, parse_duration
from opengslb.config.model import IPNetwork, ListenAddress

#: A duration setting's longest value (seconds); most have a tighter bound (:mod:`opengslb.config.schema`).
MAX_SETTING_DURATION = 366 * 86400.0
#: How to make a cluster key, quoted in the messages about one.
KEYGEN_HINT = "make one with: head -c 32 /dev/urandom | base64"
MAX_NSID_OCTETS = 128

def _split_host_port(text: str, shape: str) -> Tuple[str, str, bool]:
    """``(host, port text, bracketed)``; ValueError naming the expected ``shape``."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"{text!r} is not [IPv6]:port")
        return text[1:end], text[end + 2 :], True
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} has no port (expected {shape})")
    if ":" in host:
        raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. '[{host}]:{port}'")
    return host, port, False


def _port(text: str, whole: str) -> int:
    """``text`` as a port 1-65535; ValueError naming ``whole`` (cut short when long) otherwise."""
    shown = repr(whole) if len(whole) <= 60 else repr(whole[:57]) + "..."
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{shown}: port {text[:20]!r} is not a number")
    digits = text.lstrip("0")
    if len(digits) > 5:  # before int(): a 5,000-digit port must not cost a conversion
        raise ValueError(f"{shown}: port {digits[:10]}... ({len(digits)} digits) is outside 1-65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{shown}: port {port} is outside 1-65535")
    return port


def parse_listen_address(text: str) -> ListenAddress:
    """``"ip:port"``, ``":port"`` or ``"[v6]:port"`` → :class:`ListenAddress`.

    The host is an IP address (canonical form) or ``""`` for every local
    address; host names are refused (a listener binds an address).
    Raises ValueError with an operator-facing message.
    """
    host, port_text, bracketed = _split_host_port(text, "ip:port or :port, e.g. ':53'")
    port = _port(port_text, text)
    if not host:
        if bracketed:
            raise ValueError(f"{text!r}: empty brackets (write ':{port}' or '[::]:{port}')")
        return ListenAddress("", port)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    if bracketed and address.version != 6:
        raise ValueError(f"{text!r}: brackets are for IPv6 addresses")
    return ListenAddress(str(address), port)


def parse_host_port(text: str) -> Tuple[str, int]:
    """``"host:port"`` with an IP address or a host name → ``(canonical host, port)``.

    Used for ``cluster.join`` (and ``--join``).  IP addresses come back in
    canonical form, names in lower case.  Raises ValueError.
    """
    host, port_text, bracketed = _split_host_port(text, "host:port, e.g. '192.0.2.12:7946'")
    port = _port(port_text, text)
    if not host:
        raise ValueError(f"{text!r} has no host")
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        if bracketed:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    try:
        return dns_name(host), port
    except ValueError as error:
        raise ValueError(f"{text!r}: {host!r} is neither an IP address nor a host name ({error})") from None


def format_host_port(host: str, port: int) -> str:
    """``host:port``, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_LABEL = re.compile(r"[a-z0-9_-]{1,63}")


def dns_name(value: str) -> str:
    """A DNS name in normal form (lower case, no trailing dot); ValueError otherwise."""
    name = value[:-1] if value.endswith(".") else value
    name = name.lower()
    if not name:
        raise ValueError("a name is required (the root '.' cannot be configured)")
    if not name.isascii():
        raise ValueError(f"{value!r} is not ASCII; write it in its xn-- (punycode) form")
    if len(name) > 253:
        raise ValueError(f"{value!r} is longer than 253 characters")
    for label in name.split("."):
        if not label:
            raise ValueError(f"{value!r} has an empty label")
        if len(label) > 63:
            raise ValueError(f"{value!r}: label {label[:20]!r}... is longer than 63 characters")
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"{value!r}: label {label!r} may hold only letters, digits, hyphens and underscores"
            )
    return name


def within(name: str, zone: str) -> bool:
    """Whether the DNS name ``name`` is ``zone`` or below it (both in normal form)."""
    return name == zone or name.endswith("." + zone)



def kind_of(value: Any, reveal: bool = True) -> str:
    """How a value reads in a message: ``a string ('80')``; secrets are not shown."""
    if value is None:
        return "null (empty)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})" if reveal else "a boolean"
    if isinstance(value, int):
        return f"an integer ({number_text(value)})" if reveal else "an integer"
    if isinstance(value, float):
        return f"a number ({value:g})" if reveal else "a number"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})" if reveal else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def number_text(value: Union[int, float]) -> str:
    """A number as a message shows it: a 400-digit integer reads as ``a 400-digit number``."""
    if isinstance(value, float):
        return f"{value:g}"
    if -(10**20) < value < 10**20:
        return str(value)
    try:
        return f"a {len(str(abs(value)))}-digit number"
    except ValueError:  # longer than sys.get_int_max_str_digits()
        return "a number with thousands of digits"


def suggest(word: str, choices: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(choices: Sequence[str]) -> str:
    """The choices as a message lists them."""
    return ", ".join(choices)



def as_string(value: Any) -> str:
    """A string, as given."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {kind_of(value)}")
    return str(value)




def as_nsid(value: Any) -> str:
    """dns.nsid: printable text of at most 128 UTF-8 octets ("" turns NSID off)."""
    text = as_string(value)
    if len(text.encode("utf-8")) > MAX_NSID_OCTETS:
        raise ValueError(f"must be at most {MAX_NSID_OCTETS} octets (UTF-8)")
    if not text.isprintable():
        raise ValueError("must be printable text")
    return text


def as_nonempty_string(value: Any) -> str:
    """A string with more than white space in it."""
    text = as_string(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def as_bool(value: Any) -> bool:
    """A YAML boolean (``true``/``false``); the message explains YAML 1.2's ``yes``/``no``."""
    if not isinstance(value, bool):
        hint = ""
        if isinstance(value, str):
            if value.lower() in ("yes", "no", "on", "off", "y", "n"):
                hint = " (YAML 1.2 reads yes/no/on/off as strings: write true or false)"
            else:
                hint = " (write true or false, unquoted)"
        raise ValueError(f"must be true or false, not {kind_of(value)}{hint}")
    return value


def as_int(value: Any, low: int, high: int) -> int:
    """An integer (not a boolean) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, not {kind_of(value)}")
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high} (got {number_text(value)})")
    return int(value)


def as_percent(value: Any) -> float:
    """A percentage above 0 and at most 100, as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number (a percentage), not {kind_of(value)}")
    if not 0 < value <= 100:  # also refuses NaN
        raise ValueError(f"must be a percentage above 0 and at most 100 (got {number_text(value)})")
    return float(value)


def as_hysteresis(value: Any) -> float:
    """A percentage from 0 up to (not including) 100, written ``20%`` or ``20``; as a float."""
    number: Any = value
    if isinstance(value, str):
        text = value.strip()
        digits = text[:-1].strip() if text.endswith("%") else text
        try:
            number = float(digits) if digits and len(digits) <= 32 else None
        except ValueError:
            number = None
        if number is None:
            raise ValueError(f"must be a percentage such as '20%', not {kind_of(value)}")
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ValueError(f"must be a percentage such as '20%', not {kind_of(value)}")
    if not 0 <= number < 100:  # also refuses NaN
        raise ValueError(f"must be a percentage from 0% up to (not including) 100% (got {value!r})")
    return float(number)


def as_optional_duration(value: Any, high: float) -> float:
    """A duration from 0s (``"0s"`` or ``0``: off) to ``high`` seconds; ValueError otherwise."""
    if value is None or isinstance(value, (list, dict)):
        raise ValueError(f"must be a duration such as '30s' or '0s', not {kind_of(value)}")
    seconds = parse_duration(value, maximum=high)
    if seconds > high:
        raise ValueError(f"must be at most {format_duration(high)} (got {format_duration(seconds)})")
    return seconds


def as_code(value: Any, what: str, choices: Optional[Collection[str]] = None) -> str:
    """A two-letter upper-case code (a country; with ``choices``, one of them)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a {what} code such as 'DE', not {kind_of(value)}")
    code = value.strip().upper()
    if choices is not None:
        if code not in choices:
            raise ValueError(f"unknown {what} code {value!r} (expected one of: {one_of(sorted(choices))})")
    elif len(code) != 2 or not code.isascii() or not code.isalpha():
        raise ValueError(f"{value!r} is not a two-letter ISO 3166 {what} code (e.g. 'DE')")
    return code


def as_positive_duration(value: Any) -> float:
    """A duration above 0s and at most :data:`MAX_SETTING_DURATION`; ValueError otherwise."""
    return as_duration(value, 0.0, MAX_SETTING_DURATION)


def as_duration(value: Any, low: float, high: float) -> float:
    """A duration ``d`` with ``0 < d``, ``low <= d <= high`` (seconds); ValueError otherwise.

    Never raises anything else, whatever ``value`` is (see :func:`parse_duration`).
    """
    if value is None or isinstance(value, (list, dict)):
        raise ValueError(f"must be a duration such as '30s', not {kind_of(value)}")
    seconds = parse_duration(value, maximum=high)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0s (got {value!r})")  # short: it parsed
    if seconds < low:
        raise ValueError(f"must be at least {format_duration(low)} (got {format_duration(seconds)})")
    if seconds > high:
        raise ValueError(f"must be at most {format_duration(high)} (got {format_duration(seconds)})")
    return seconds


def as_choice(value: Any, choices: Sequence[str], what: str, aliases: Optional[Mapping[str, str]]) -> str:
    """One of ``choices`` (case and surrounding space ignored; ``aliases`` map other words onto them)."""
    if not isinstance(value, str):
        raise ValueError(f"must be one of {one_of(choices)}, not {kind_of(value)}")
    word = value.strip().lower()
    if aliases and word in aliases:
        word = aliases[word]
    if word not in choices:
        raise ValueError(
            f"unknown {what} {value!r}{suggest(word, choices)} (expected one of: {one_of(choices)})"
        )
    return word


def as_listen(value: Any) -> ListenAddress:
    """A listen address (:func:`parse_listen_address`)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string 'ip:port' or ':port' (e.g. ':53'), not {kind_of(value)}")
    return parse_listen_address(value)


def as_advertise(value: Any) -> str:
    """This node's own ``IP:port`` in canonical form (``""`` when empty); wildcards are refused."""
    text = as_string(value)
    if not text:
        return ""
    address = parse_listen_address(text)
    if address.is_wildcard:
        raise ValueError(f"must be this node's own IP:port, not a wildcard ({text!r})")
    return str(address)


def as_ip(value: Any) -> str:
    """An IP address in canonical form."""
    if not isinstance(value, str):
        raise ValueError(f"must be an IP address, not {kind_of(value)}")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def as_optional_ip(value: Any) -> str:
    """An IP address in canonical form, or ``""`` when empty or null."""
    if value == "" or value is None:
        return ""
    return as_ip(value)


def as_server_address(value: Any) -> str:
    """An IP address a server can have (not unspecified, not multicast)."""
    text = as_ip(value)
    address = ipaddress.ip_address(text)
    if address.is_unspecified or address.is_multicast:
        raise ValueError(f"{text} is not a usable server address")
    return text


def as_network(value: Any) -> IPNetwork:
    """A network without host bits set (the message suggests the fixed one)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a network such as '10.0.0.0/8', not {kind_of(value)}")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as error:
        if "host bits set" in str(error):
            fixed = ipaddress.ip_network(value.strip(), strict=False)
            raise ValueError(f"{value!r} has host bits set (did you mean '{fixed}'?)") from None
        raise ValueError(f"{value!r} is not a network (e.g. '10.0.0.0/8' or '2001:db8::/32')") from None


def as_dns_name(value: Any) -> str:
    """A DNS name in normal form (:func:`dns_name`)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a DNS name, not {kind_of(value)}")
    return dns_name(value)


def as_mailbox(value: Any) -> str:
    """An SOA mailbox written as a DNS name (``hostmaster.example.com``, not ``@``)."""
    if isinstance(value, str) and "@" in value:
        fixed = value.replace("@", ".", 1).rstrip(".")
        raise ValueError(f"write the mailbox as a DNS name: {fixed!r}, not {value!r}")
    return as_dns_name(value)


def as_region_name(value: Any) -> str:
    """A region name: not empty, no ``/`` and no white space (it appears in API paths)."""
    name = as_nonempty_string(value)
    if "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"{name!r} must not contain '/' or spaces (region names appear in API paths)")
    return name


def as_url_path(value: Any) -> str:
    """A URL path starting with ``/``."""
    text = as_string(value)
    if not text.startswith("/"):
        raise ValueError(f"must start with '/' (got {text!r})")
    return text


def as_encryption_key(value: Any) -> str:
    """The base64 of exactly 32 bytes (``""`` when empty); the message never shows the value."""
    if not isinstance(value, str):
        raise ValueError(f"must be a base64 string, not {kind_of(value, reveal=False)}; {KEYGEN_HINT}")
    text = value.strip()
    if not text:
        return ""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"is not valid base64; it must be base64 of exactly 32 bytes ({KEYGEN_HINT})"
        ) from None
    if len(raw) != 32:
        raise ValueError(
            f"decodes to {len(raw)} bytes; it must be base64 of exactly 32 bytes ({KEYGEN_HINT})"
        )
    return text

