"""``parallax pair`` and ``parallax pairings``: pair a headset's browser from the terminal, list, revoke."""

from __future__ import annotations

import argparse
import sys
import uuid

from backend.settings import Settings


def _pairings(settings: Settings):
    from backend.auth import Pairings
    from backend.services import Services

    services = Services.create(settings)
    return services, Pairings(services.db)


def cmd_pair(settings: Settings, args) -> int:
    from backend.auth import CODE_TTL, format_code
    from backend.tls import headset_urls

    services, pairings = _pairings(settings)
    try:
        new = pairings.create(args.label or "")
    finally:
        services.close()
    minutes = int(CODE_TTL.total_seconds() // 60)
    print(f"Pairing code: {format_code(new.code)}  (works once, for {minutes} minutes)")
    print("In the headset's browser open one of these (or /pair and type the code):")
    for url in headset_urls(settings):
        print(f"  {url}pair?code={new.code}")
    return 0


def cmd_pairings(settings: Settings, args) -> int:
    from backend.auth import pairing_state

    services, pairings = _pairings(settings)
    try:
        if args.action == "revoke":
            if not args.id:
                print("give the id of the pairing to revoke (see `parallax pairings list`)", file=sys.stderr)
                return 2
            try:
                row = pairings.revoke(str(uuid.UUID(args.id)))
            except ValueError:  # not an id at all
                row = None
            if row is None:
                print(f"no pairing with id {args.id}", file=sys.stderr)
                return 1
            print(f"revoked {row['id']}")
            return 0
        for row in pairings.list():
            seen = row["last_seen_at"].strftime("%Y-%m-%d %H:%M") if row["last_seen_at"] else "-"
            print(f"{row['id']}  {pairing_state(row):8}  last seen {seen:16}  {row['label'] or ''}")
        return 0
    finally:
        services.close()


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pair", help="make a one-time code that pairs a headset's browser (no API key to type)")
    p.add_argument("--label", help="a name for the device, shown in the list")
    p.set_defaults(func=cmd_pair)
    p = sub.add_parser("pairings", help="list paired devices, or revoke one")
    p.add_argument("action", nargs="?", choices=("list", "revoke"), default="list")
    p.add_argument("id", nargs="?")
    p.set_defaults(func=cmd_pairings)
