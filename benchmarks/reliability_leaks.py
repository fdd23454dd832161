"""Planted personal data and secrets, and the scan for them: shared by tests/flows/test_no_leaks.py and the
reliability benchmark, so both plant and look for the same things."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0123"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HF_TOKEN = "hf_Q7bX2mLpR9sT4vW8yZ1aC3dE5fG6hJ0kNq"
DB_PASSWORD = "Pg-Pass-4821"
DB_URL = f"postgresql://trainer:{DB_PASSWORD}@db.internal:5432/tickets"
SECRET_ENV = {"AWS_SECRET_ACCESS_KEY": AWS_SECRET, "HF_TOKEN": HF_TOKEN, "DATABASE_URL": DB_URL}
# a broken export line: the row never reaches training, but the quarantine keeps it whole
MALFORMED = ('{"instruction": "Reset my account, I am ' + EMAIL + ', call me on ' + PHONE
             + '", "output": "Sent a reset link to the address on file')
TICKETS = [
    {"instruction": "How do I reset my password?", "output": "Use the reset link on the sign-in page."},
    {"instruction": "Where are invoices kept?", "output": "Under Billing, one PDF per month."},
]
# pasted setup notes: the hub token and the tickets database's URL end up in the config's system prompt
PLANTED_PROMPT = f"You answer questions about Python. Setup: HF_TOKEN={HF_TOKEN}, tickets from {DB_URL}."
# what must never be found: the phone number is also looked for without its country code
NEEDLES = (EMAIL, PHONE, "415 555 0123", AWS_SECRET, HF_TOKEN, DB_PASSWORD)


def write_tickets(folder: Path) -> Path:
    """A tickets export (alpaca) whose third line is the malformed one carrying the email and phone number."""
    path = folder / "tickets.jsonl"
    path.write_text("\n".join([*map(json.dumps, TICKETS), MALFORMED]) + "\n")
    return path


def store_bytes(database: Path, artifacts: Path) -> dict[str, bytes]:
    """Every file of an MLflow store: the SQLite database (and any journal beside it) and every artifact."""
    files = [path for path in database.parent.glob(database.name + "*") if path.is_file()]
    files += [path for path in artifacts.rglob("*") if path.is_file()]
    return {str(path): path.read_bytes() for path in files}


def occurrences(needles: Iterable[str], blobs: Mapping[str, bytes]) -> dict[str, list[str]]:
    """For each needle, the names of the blobs that contain it (UTF-8 bytes, exact match)."""
    return {needle: [name for name, content in blobs.items() if needle.encode() in content] for needle in needles}
