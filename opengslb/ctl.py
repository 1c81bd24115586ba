"""``opengslb ctl``: the operator's command line over the HTTP API (SPEC §9).

In the habit of gdnsdctl and the consul CLI: one subcommand per question or
action, tables for people, ``--json`` for scripts (the API's own JSON, one
document per line), and the API's error message with a non-zero exit code
when something is refused.

    opengslb ctl status | servers | domains | overrides | members
    opengslb ctl explain NAME --client IP [--type A|AAAA] [--subnet PREFIX]
    opengslb ctl drain REGION/ADDRESS [--reason R] [--ttl 1h]
    opengslb ctl undrain REGION/ADDRESS
    opengslb ctl reload
    opengslb ctl join HOST:PORT [--name NAME]
    opengslb ctl remove NAME|HOST:PORT

The API address comes from ``--api`` or ``$OPENGSLB_API`` (default
``http://127.0.0.1:8080``, the default ``api.address``); the bearer token
for writes from ``--token-file`` or ``$OPENGSLB_TOKEN``.

Exit codes: 0 done; 1 the API refused or failed (its message is printed);
2 bad usage; 3 the API could not be reached.

This is a short-lived client, not part of the server: it uses blocking
``urllib`` and never runs on a reactor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

DEFAULT_API = "http://127.0.0.1:8080"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class CtlError(Exception):
    """Ends the command: ``message`` on stderr and exit ``code``."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


class Client:
    """A tiny blocking JSON client for one API endpoint.

    :param base: ``http://host:port`` of the API listener.
    :param token: the bearer token sent with writes (and reads; harmless).
    :param timeout: seconds per request.
    """

    def __init__(self, base: str, token: Optional[str], timeout: float = 10.0) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None,
             query: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """The decoded JSON reply of ``method path``; raises :class:`CtlError` on any failure."""
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _decode(response.read())
        except urllib.error.HTTPError as error:
            reply = _decode(error.read())
            message = reply.get("error") or error.reason
            outcome = reply.get("outcome")
            extra = f" (outcome: {outcome})" if outcome else ""
            problems = "".join(f"\n  {p}" for p in reply.get("problems", []))
            raise CtlError(f"{method} {path}: {error.code} {message}{extra}{problems}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CtlError(f"cannot reach the API at {self.base}: {reason} "
                           "(set --api or OPENGSLB_API)", EXIT_UNREACHABLE) from None


def _decode(raw: bytes) -> Dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"error": raw[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"value": value}


# -- output ---------------------------------------------------------------------------

def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """``rows`` as left-aligned columns under ``headers`` (``None`` shows as ``-``)."""
    text = [[("-" if cell is None else str(cell)) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in text]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in text]
    return "\n".join(lines)


def _weight(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def show_status(reply: Dict[str, Any]) -> str:
    raft = reply.get("raft") or {}
    lines = [f"node       {reply.get('node_name')} ({reply.get('mode')})",
             f"leader     {'yes' if reply.get('is_leader') else 'no'}"
             + (f" (leader: {reply.get('leader_address')})" if reply.get("leader_address") else ""),
             f"config     {str(reply.get('config_hash', ''))[:16]}"]
    if raft:
        lines.append(f"raft       {raft.get('state')}, term {raft.get('term')}, "
                     f"commit index {raft.get('commit_index')}")
    lines.append(f"members    {len(reply.get('members', []))}")
    return "\n".join(lines)


def show_servers(reply: Dict[str, Any]) -> str:
    rows = [(s["region"], f"{s['address']}:{s['port']}", "up" if s["healthy"] else "DOWN",
             _weight(s.get("effective_weight")), s.get("weight_source"), s.get("judged_by"),
             s.get("last_error")) for s in reply.get("servers", [])]
    return table(rows, ["region", "server", "health", "weight", "source", "judged by", "last error"])


def show_domains(reply: Dict[str, Any]) -> str:
    rows = []
    for domain in reply.get("domains", []):
        healthy = [c for c in domain.get("candidates", []) if c.get("healthy")]
        rows.append((domain["name"], domain.get("algorithm"), domain.get("ttl"),
                     ",".join(domain.get("regions", [])),
                     f"{len(healthy)}/{len(domain.get('candidates', []))}"))
    return table(rows, ["domain", "algorithm", "ttl", "regions", "healthy"])


def show_overrides(reply: Dict[str, Any]) -> str:
    rows = [(o["region"], o["address"], o.get("weight"), o.get("enabled"), o.get("reason"),
             o.get("expires_at")) for o in reply.get("overrides", [])]
    return table(rows, ["region", "address", "weight", "enabled", "reason", "expires"])


def show_members(reply: Dict[str, Any]) -> str:
    rows = [(m.get("name"), m.get("address"), m.get("status")) for m in reply.get("members", [])]
    return table(rows, ["name", "address", "status"])


def show_explain(reply: Dict[str, Any]) -> str:
    """The answer, what decided it, then every candidate with its health, weight and reason."""
    answer = ", ".join(reply.get("answer") or []) or "(none)"
    scope = reply.get("ecs_scope")
    status = f"{reply.get('rcode')}" + (f", ECS scope /{scope}" if scope is not None else "")
    lines = [f"{reply.get('name')} {reply.get('type')} for {reply.get('client')} "
             f"(client network {reply.get('client_network')})",
             f"answer     {answer}  [{status}]"]
    zone = reply.get("zone")
    if reply.get("domain") is not None:
        lines.append(f"domain     {reply['domain']} ({reply.get('algorithm')}) in zone {zone}")
        lines.append(f"matched    {_matched_text(reply.get('matched'))}")
    else:
        lines.append(f"domain     (not a configured domain; zone {zone})" if zone is not None
                     else "domain     (outside every zone)")
    if reply.get("policy") is not None:
        lines.append(f"policy     when_all_down: {reply['policy']} (every server is down)")
    candidates = reply.get("candidates") or []
    if not candidates:
        return "\n".join(lines)
    rows: List[Tuple[Any, ...]] = [
        (c.get("region"), _endpoint(c.get("address"), c.get("port")), "up" if c.get("healthy") else "DOWN",
         _weight(c.get("effective_weight")),
         "answered" if c.get("excluded_because") is None else c.get("excluded_because"))
        for c in candidates]
    headers = ["region", "server", "health", "weight", "in the answer, or why not"]
    if any("node_verdicts" in c for c in candidates):
        headers.append("node verdicts")
        rows = [row + (" ".join(f"{node}={'up' if up else 'DOWN'}"
                                for node, up in (c.get("node_verdicts") or {}).items()) or "-",)
                for row, c in zip(rows, candidates)]
    return "\n".join(lines) + "\n" + table(rows, headers)


def _endpoint(address: Any, port: Any) -> str:
    return f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"


def _matched_text(matched: Any) -> str:
    """A topology rule, GeoIP record or hashed network in one line."""
    if not matched:
        return "nothing client-specific (the domain's own order)"
    if not isinstance(matched, dict):
        return json.dumps(matched)
    if "hashed_network" in matched:
        return f"hashed network {matched['hashed_network']}"
    parts = []
    if "rule" in matched:
        what = "; ".join(f"{key} {', '.join(matched[key])}" for key in ("networks", "countries", "continents")
                         if matched.get(key))
        parts.append(f"topology rule {matched['rule']}: {what} → regions {', '.join(matched.get('regions', []))}")
    geoip = matched.get("geoip")
    if isinstance(geoip, dict):
        parts.append(f"GeoIP country {geoip.get('country') or '-'}, continent {geoip.get('continent') or '-'} "
                     f"(/{geoip.get('prefix')})")
    text = "; ".join(parts) or json.dumps(matched)
    if matched.get("order"):
        text += f" (order {', '.join(matched['order'])})"
    return text


def show_done(reply: Dict[str, Any]) -> str:
    return json.dumps(reply, sort_keys=True)


# -- commands -------------------------------------------------------------------------

def _server_path(target: str) -> str:
    region, slash, address = target.partition("/")
    if not slash or not region or not address:
        raise CtlError(f"expected REGION/ADDRESS, not {target!r}", EXIT_USAGE)
    return f"/api/v1/overrides/{urllib.parse.quote(region, safe='')}/{urllib.parse.quote(address, safe='')}"


Command = Callable[[Client, argparse.Namespace], Tuple[Dict[str, Any], Callable[[Dict[str, Any]], str]]]


def _drain(client: Client, args: argparse.Namespace) -> Dict[str, Any]:
    body: Dict[str, Any] = {"enabled": False, "reason": args.reason}
    if args.ttl:
        body["ttl"] = args.ttl
    return client.call("PUT", _server_path(args.target), body)


def _remove(client: Client, args: argparse.Namespace) -> Dict[str, Any]:
    target: str = args.target
    key = "address" if ":" in target else "name"
    return client.call("POST", "/api/v1/cluster/remove", {key: target})


def _join(client: Client, args: argparse.Namespace) -> Dict[str, Any]:
    body = {"address": args.address}
    if args.name:
        body["name"] = args.name
    return client.call("POST", "/api/v1/cluster/join", body)


def _explain(client: Client, args: argparse.Namespace) -> Dict[str, Any]:
    query = {"name": args.name, "type": args.type, "client": args.client}
    if args.subnet is not None:
        query["subnet"] = str(args.subnet)
    return client.call("GET", "/api/v1/explain", query=query)


COMMANDS: Dict[str, Tuple[str, Callable[[Client, argparse.Namespace], Dict[str, Any]],
                          Callable[[Dict[str, Any]], str]]] = {
    "status": ("this node, its role and the cluster",
               lambda c, a: c.call("GET", "/api/v1/cluster/status"), show_status),
    "servers": ("every server with health and effective weight",
                lambda c, a: c.call("GET", "/api/v1/health/servers"), show_servers),
    "domains": ("every domain with algorithm and healthy candidates",
                lambda c, a: c.call("GET", "/api/v1/domains"), show_domains),
    "overrides": ("active overrides", lambda c, a: c.call("GET", "/api/v1/overrides"), show_overrides),
    "members": ("cluster members", lambda c, a: c.call("GET", "/api/v1/cluster/members"), show_members),
    "explain": ("why NAME gets its answer (for a client)", _explain, show_explain),
    "drain": ("take REGION/ADDRESS out of every answer (an override with enabled: false)",
              _drain, show_done),
    "undrain": ("lift the override of REGION/ADDRESS",
                lambda c, a: c.call("DELETE", _server_path(a.target)), show_done),
    "reload": ("reload the configuration (like SIGHUP)",
               lambda c, a: c.call("POST", "/api/v1/config/reload"), show_done),
    "join": ("add a member by its cluster address HOST:PORT", _join, show_done),
    "remove": ("remove a member by NAME or HOST:PORT", _remove, show_done),
}


def parser(environ: Dict[str, str]) -> argparse.ArgumentParser:
    """The command line; ``environ`` supplies ``$OPENGSLB_API``."""
    top = argparse.ArgumentParser(prog="opengslb ctl", description="Operate OpenGSLB through its API.")
    top.add_argument("--api", default=environ.get("OPENGSLB_API", DEFAULT_API),
                     help="API address (default: $OPENGSLB_API or %(default)s)")
    top.add_argument("--token-file", help="file holding the bearer token (default: $OPENGSLB_TOKEN)")
    top.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    top.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _, _) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name in ("drain", "undrain"):
            command.add_argument("target", metavar="REGION/ADDRESS")
        if name == "drain":
            command.add_argument("--reason", default="drained with opengslb ctl")
            command.add_argument("--ttl", help="lift it automatically after this long (e.g. 1h)")
        if name == "explain":
            command.add_argument("name", metavar="NAME")
            command.add_argument("--type", default="A", choices=["A", "AAAA"])
            command.add_argument("--client", required=True,
                                 help="the client's IP address (the query's source, or the ECS address)")
            command.add_argument("--subnet", type=int,
                                 help="ECS source prefix length (absent: a query without ECS)")
        if name == "join":
            command.add_argument("address", metavar="HOST:PORT")
            command.add_argument("--name")
        if name == "remove":
            command.add_argument("target", metavar="NAME|HOST:PORT")
    return top


def _token(args: argparse.Namespace, environ: Dict[str, str]) -> Optional[str]:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                return handle.read().strip() or None
        except OSError as error:
            raise CtlError(f"cannot read the token file: {error}", EXIT_USAGE) from None
    return environ.get("OPENGSLB_TOKEN") or None


def main(argv: Optional[List[str]] = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
         environ: Optional[Dict[str, str]] = None) -> int:
    """Run one command; return the exit code (see the module docstring)."""
    environ = dict(os.environ) if environ is None else environ
    try:
        args = parser(environ).parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and EXIT_USAGE
    try:
        _, run, show = COMMANDS[args.command]
        reply = run(Client(args.api, _token(args, environ), args.timeout), args)
    except CtlError as error:
        print(f"opengslb ctl: {error}", file=err)
        return error.code
    print(json.dumps(reply) if args.json else show(reply), file=out)
    return EXIT_OK
