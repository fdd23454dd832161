"""Labelled rows for the personal-data benchmark (benchmarks/pii.py): seeded, offline, no network.

Technical rows (printed arrays, slices, versions, dates, timestamps, hex ids, UUIDs, order, invoice and ticket
numbers, extension ranges, amounts, tables, big integers, Luhn-valid numbers in code) hold no personal data;
prose rows (support e-mails, finance-desk notes, medical-style notes) have personal data of every type
planted, often next to technical numbers. Every planted value is valid for its type: e-mails with real
suffixes, phone numbers python-phonenumbers calls valid (international formats from 13 countries, national
formats from the regions presidio tries by default), Luhn-valid card numbers, IBANs with correct check
digits, IPv4/IPv6 addresses, US SSNs and UK NHS numbers with a valid checksum.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

import numpy as np
import phonenumbers as pn

NAMES = ["Jane Roe", "Priya Natarajan", "Lukas Becker", "Amélie Laurent", "Tom Okafor", "Sofia Rossi", "Hiro Tanaka",
         "Ana Souza", "Liam Walsh", "Noor Haddad", "Mei Chen", "Oskar Nowak"]
DOMAINS = ["hospital.org", "example.com", "acme-finance.de", "mail.co.uk", "uni-heidelberg.de", "startup.io",
           "clinic.nhs.uk", "bank.fr", "gmail.com", "outlook.com"]
NATIONAL_REGIONS = ["US", "GB", "DE", "FR", "IN", "BR", "CA"]  # presidio's default regions (IL left out)
INTERNATIONAL_REGIONS = NATIONAL_REGIONS + ["JP", "AU", "ES", "IT", "NL", "MX"]
IBAN_BBAN = {"DE": "d18", "GB": "L4d14", "FR": "d23", "NL": "L4d10", "ES": "d20", "BE": "d12", "AT": "d16", "PL": "d24"}
PACKAGES = ["numpy", "pandas", "torch", "scipy", "requests", "pydantic", "transformers"]


@dataclass
class Row:
    text: str
    planted: dict[str, list[str]] = field(default_factory=dict)  # type -> values planted in the text

    @property
    def types(self) -> set[str]:
        return set(self.planted)


class Planter:
    """Valid personal data of each type, drawn from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def digits(self, count: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(count))

    def email(self) -> str:
        first, last = self.rng.choice(NAMES).lower().replace("é", "e").split()
        local = self.rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{self.rng.randint(1, 99)}"])
        return f"{local}@{self.rng.choice(DOMAINS)}"

    def phone_number(self, region: str) -> pn.PhoneNumber:
        kind = self.rng.choice([pn.PhoneNumberType.MOBILE, pn.PhoneNumberType.FIXED_LINE])
        example = pn.example_number_for_type(region, kind)
        significant = pn.national_significant_number(example)  # keeps Italy's leading zero
        for _ in range(1000):
            keep = self.rng.randint(2, 4)
            candidate = pn.parse(significant[:keep] + self.digits(len(significant) - keep), region)
            if pn.is_valid_number(candidate):
                return candidate
        return example

    def phone(self) -> tuple[str, str]:
        """A phone number and its style: international, national (grouped the region's way) or bare digits."""
        style = self.rng.choices(["international", "national", "bare"], weights=[4, 4, 2])[0]
        region = self.rng.choice(INTERNATIONAL_REGIONS if style == "international" else NATIONAL_REGIONS)
        number = self.phone_number(region)
        if style == "international":
            text = pn.format_number(number, pn.PhoneNumberFormat.INTERNATIONAL)
            if self.rng.random() < 0.2:
                text = "00" + text[1:]
        elif style == "national":
            text = pn.format_number(number, pn.PhoneNumberFormat.NATIONAL)
            if region in ("US", "CA") and self.rng.random() < 0.5:
                digits = str(number.national_number)
                text = self.rng.choice("-. ").join((digits[:3], digits[3:6], digits[6:]))
        else:
            text = "".join(ch for ch in pn.format_number(number, pn.PhoneNumberFormat.NATIONAL) if ch.isdigit())
        return text, style

    def luhn(self, prefix: str, length: int) -> str:
        body = prefix + self.digits(length - len(prefix) - 1)
        total = 0
        for index, digit in enumerate(reversed(body)):
            value = int(digit) * (2 if index % 2 == 0 else 1)
            total += value - 9 if value > 9 else value
        return body + str((10 - total % 10) % 10)

    def card(self) -> tuple[str, str]:
        prefix, length = self.rng.choice([("4", 16), ("51", 16), ("55", 16), ("6011", 16), ("37", 15), ("4", 16)])
        number = self.luhn(prefix, length)
        style = self.rng.choices(["grouped", "bare"], weights=[7, 3])[0]
        if style == "bare":
            return number, style
        sep = self.rng.choice(" -")
        if length == 15:
            return sep.join((number[:4], number[4:10], number[10:])), style
        return sep.join(number[i : i + 4] for i in range(0, 16, 4)), style

    def iban(self) -> str:
        country, spec = self.rng.choice(list(IBAN_BBAN.items()))
        bban = "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(int(spec[1]))) if spec[0] == "L" else ""
        bban += self.digits(int(spec.rsplit("d", 1)[1]))
        numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
        code = f"{country}{98 - int(numeric) % 97:02d}{bban}"
        if self.rng.random() < 0.5:
            return " ".join(code[i : i + 4] for i in range(0, len(code), 4))
        return code

    def ip(self) -> str:
        r = self.rng
        return r.choice([
            f"203.0.113.{r.randint(1, 254)}", f"198.51.100.{r.randint(1, 254)}", f"192.168.{r.randint(0, 20)}.{r.randint(2, 254)}",
            f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}", f"{r.randint(11, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
            f"2001:db8:{r.randint(1, 0xffff):x}::{r.randint(1, 0xffff):x}",
            ":".join(f"{r.randint(0, 0xffff):x}" for _ in range(8)),
            f"fe80::{r.randint(1, 0xffff):x}:{r.randint(1, 0xffff):x}:{r.randint(1, 0xffff):x}",
        ])

    def ssn(self) -> str:
        area = self.rng.choice([a for a in range(1, 900) if a != 666])
        sep = self.rng.choice(["-", "-", " "])
        return f"{area:03d}{sep}{self.rng.randint(1, 99):02d}{sep}{self.rng.randint(1, 9999):04d}"

    def nhs(self) -> str:
        while True:
            body = self.digits(9)
            check = 11 - sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True)) % 11
            if check == 11:
                check = 0
            if check != 10 and len(set(body)) > 1:
                number = body + str(check)
                return self.rng.choice([f"{number[:3]} {number[3:6]} {number[6:]}", f"{number[:3]}-{number[3:6]}-{number[6:]}", number])


def numpy_output(r: random.Random, p: Planter) -> str:
    values = r.choice([
        np.angle(np.array([1, 1 - 1j, 1j, -1 + 1j])), np.linspace(0, 1, r.randint(3, 6)) / 7,
        np.array([r.gauss(0, 10 ** r.randint(0, 6)) for _ in range(r.randint(2, 5))]),
        np.array([int(p.digits(10)) for _ in range(r.randint(2, 4))]), np.arange(r.randint(2, 6)) * int(p.digits(9)),
    ])
    printed = repr(values)
    return r.choice([f">>> np.angle(z)\n{printed}", f"```python\n>>> x = f(data)\n>>> x\n{printed}\n```",
                     f"The call returns {printed} as expected.", f"Output:\n\n    {printed}\n"])


def slices(r: random.Random, p: Planter) -> str:
    a, b = r.randint(0, 3), r.randint(4, 12)
    return (f"Take every second element with x[{a}::2], the first ones with x[0:{b}] and reverse with x[::-1]; "
            f"for a matrix use m[{a}:{b}, 0::2].")


def versions(r: random.Random, p: Planter) -> str:
    version = f"{r.randint(0, 4)}.{r.randint(0, 40)}.{r.randint(0, 12)}"
    return r.choice([f"Pinned {r.choice(PACKAGES)} to {version} (was 1.26.4).", f"Python 3.11.{r.randint(1, 9)} with CUDA 12.1.105.",
                     f"{r.choice(PACKAGES)}=={version} breaks on Chrome 124.0.{r.randint(1000, 6999)}.91.",
                     f"Upgrade to version {version}.{r.randint(0, 9)} to fix it.", f"firmware {r.randint(1, 3)}.{r.randint(0, 12)}.{r.randint(0, 9)}.{r.randint(0, 20)}"])


def dates(r: random.Random, p: Planter) -> str:
    y, m, d, h = r.randint(2019, 2025), r.randint(1, 12), r.randint(1, 28), r.randint(0, 23)
    return r.choice([f"Released {y}-{m:02d}-{d:02d}.", f"at {y}-{m:02d}-{d:02d}T{h:02d}:{r.randint(0, 59):02d}:45Z",
                     f"logged {y}-{m:02d}-{d:02d} {h:02d}:30:45.123456+00:00", f"due {m:02d}/{d:02d}/{y}",
                     f"am {d:02d}.{m:02d}.{y}", f"timestamp {r.randint(1_500_000_000, 1_750_000_000)}", f"build {y}{m:02d}{d:02d}"])


def hex_ids(r: random.Random, p: Planter) -> str:
    return r.choice([f"request {uuid.UUID(int=r.getrandbits(128), version=4)} failed",
                     f"commit {r.getrandbits(160):040x}", f"at address 0x{r.getrandbits(44):x}",
                     f"trace id {r.getrandbits(128):032x}"])


def order_numbers(r: random.Random, p: Planter) -> str:
    return r.choice([f"Order #{p.digits(10)} shipped.", f"order number {r.randint(2, 9)}{p.digits(9)}",
                     f"Invoice INV-{r.randint(2019, 2025)}-{p.digits(6)} is overdue.", f"invoice {r.randint(2019, 2025)}-{p.digits(6)}",
                     f"ticket {p.digits(8)}", f"PO {r.randint(1, 9)}{p.digits(9)} approved", f"case {p.digits(8)} closed",
                     f"tracking number 1Z{p.digits(16)}", f"Ref. {r.randint(2, 9)}{p.digits(9)}"])


def extension_ranges(r: random.Random, p: Planter) -> str:
    a = r.randint(1000, 8899)
    b = a + r.randint(50, 999)
    return r.choice([f"Extensions {a}-{b} ring the finance desk.", f"internal range {a}-{b}", f"ext. {a}-{b} (sales)",
                     f"extensions {a}0-{b}9", f"Desk lines {a}-{b} and {b + 1}-{b + 99} are internal."])


def money(r: random.Random, p: Planter) -> str:
    n = r.uniform(10, 9_999_999)
    return r.choice([f"${n:,.2f}", "EUR " + f"{n:,.2f}".replace(",", " ").replace(".", ","), f"total USD {int(n)}.00",
                     f"£ {n:,.2f}", f"balance {n:.2f}", f"amount {int(n * 100)}"])


def table(r: random.Random, p: Planter) -> str:
    rows = "\n".join(f"| {p.digits(10)} | {r.uniform(1, 9999):.2f} | 2024-0{r.randint(1, 9)}-1{r.randint(0, 9)} |"
                     for _ in range(r.randint(2, 4)))
    runs = "\n".join(f"{i},{r.uniform(1, 3):.4f},{r.uniform(100, 9000):.1f},{p.digits(10)}" for i in range(r.randint(2, 4)))
    return r.choice([f"| order | amount | date |\n|---|---|---|\n{rows}", f"run,loss,tokens_per_s,seed\n{runs}",
                     f"   order_id      amount\n0  {p.digits(10)}  {r.uniform(1, 999):.2f}\n1  {p.digits(10)}  {r.uniform(1, 999):.2f}"])


def floats(r: random.Random, p: Planter) -> str:
    return r.choice([f"converges to {r.uniform(-1, 1):.8f} after {r.randint(3, 40)} steps", "pi is 3.141592653589793",
                     "0.1 + 0.2 == 0.30000000000000004", f"loss -{r.uniform(0, 1):.8f}", "N_A = 6.02214076e23",
                     f"scale {r.uniform(1, 9):.10f}e-05", f"{r.uniform(0, 1):.16f}"])


def big_ints(r: random.Random, p: Planter) -> str:
    return r.choice(["2**32 = 4294967296", f"the seed was {p.digits(10)}", f"processed {int(p.digits(8)):,} rows",
                     f"processed {r.randint(1, 9)}{p.digits(9)} rows", "sys.maxsize is 9223372036854775807",
                     f"hash(key) returned {r.randint(1, 9)}{p.digits(18)}"])


def luhn_in_code(r: random.Random, p: Planter) -> str:
    n = p.luhn(r.choice(["4", "5", "37", "6011"]), 16)
    return r.choice([f"```python\nassert checksum({n}) == 0\n```", f">>> int('{n}')\n{n}", f"`x = {n}`",
                     f"value 0.{n}", f"array([{n}, {p.luhn('4', 16)}])"])


def id_lookalikes(r: random.Random, p: Planter) -> str:
    return r.choice([f"Part {p.ssn()} ships Monday.", f"Batch {p.nhs()} passed QA.", f"| batch | qty | status |\n|---|---|---|\n| {p.nhs()} | 12 | OK |\n| {p.nhs()} | 3 | OK |",
                     f"order {p.ssn()}", f"serial no. {p.nhs()}"])


def ip_in_code(r: random.Random, p: Planter) -> str:
    return r.choice([f'```python\napp.run(host="{p.ip()}", port=8000)\n```', f"`curl http://{p.ip()}:8080/health`",
                     f">>> ipaddress.ip_address('{p.ip()}').is_private\nTrue"])


def times(r: random.Random, p: Planter) -> str:
    return r.choice([f"at {r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}", "aspect ratio 16:9",
                     f"MAC {':'.join(f'{r.getrandbits(8):02x}' for _ in range(6))}", f"std::vector<int> v({r.randint(2, 99)});"])


TECHNICAL = [numpy_output, slices, versions, dates, hex_ids, order_numbers, extension_ranges, money, table, floats,
             big_ints, luhn_in_code, id_lookalikes, ip_in_code, times]
INTROS = ["After upgrading, the notebook prints:", "Here is what I see:", "The benchmark finished.", "Quick note from the run:",
          "For reference:", "Results below.", "Minutes of the stand-up:"]

# Sentences that plant one value: (with a context word of the type, without one). Bare phone and card numbers
# and national IDs are planted with context only: without it they are indistinguishable from the order numbers,
# counters and serials of the technical rows.
SENTENCES = {
    "email": (["Please write to {v} with the logs.", "My e-mail is {v}.", "Email {v} for access."],
              ["Reply to {v} by Friday.", "{name} <{v}>", "cc {v} on the ticket."]),
    "phone": (["Call me on {v} if it breaks again.", "My mobile is {v}.", "Phone: {v}", "Tel. {v}", "Please ring {v} after 3pm.",
               "Contact the ward on {v}."],
              ["{name} ({v}) will follow up.", "Best,\n{name}\n{v}", "Escalated to {name}, {v}.", "You can get hold of {name} at {v}."]),
    "credit_card": (["Card number {v} was declined.", "Paid by Visa {v}.", "The credit card {v} expires 09/27."],
                    ["Refund the payment made with {v} on 2024-05-01.", "Customer read out {v} for the deposit."]),
    "iban": (["IBAN {v}", "Please transfer it to the bank account {v}."],
             ["Beneficiary: {name}, {v}", "Wire the deposit to {v} before Friday."]),
    "ip_address": (["Blocked IP address {v} after five attempts.", "Her IP was {v}."],
                   ["Login attempts from {v} were blocked.", "The user connected via {v} and uploaded the file."]),
    "national_id": (["SSN {ssn} on the intake form.", "Social security number {ssn} confirmed.", "NHS number {nhs}.",
                     "Patient (NHS no. {nhs}) was seen today."], []),
}
GENRES = {
    "support": ("Hi support,\n\n{tech}\n\n{pii}\n\nThanks,\n{name}", "{pii}\n\n{tech}"),
    "finance": ("Desk note {date}: {pii} Invoice INV-2024-{inv}; EUR 1.234,50; ext. 2863-3442.", "{tech}\n\n{pii}"),
    "medical": ("Patient seen {date}. BP 128/82, HR 72, temp 37.2. {pii} Next review in 6 weeks.", "Ward round: {pii}"),
}


def pii_sentence(r: random.Random, p: Planter, kind: str, name: str) -> tuple[str, str]:
    """One sentence with one planted value of the type, and the value."""
    with_context, neutral = SENTENCES[kind]
    if kind == "national_id":
        template = r.choice(with_context)
        value = p.ssn() if "{ssn}" in template else p.nhs()
        return template.format(ssn=value, nhs=value), value
    if kind == "phone":
        value, style = p.phone()
    elif kind == "credit_card":
        value, style = p.card()
    else:
        value, style = {"email": p.email, "iban": p.iban, "ip_address": p.ip}[kind](), "any"
    pool = with_context if style == "bare" or r.random() < 0.5 else neutral
    return r.choice(pool).format(v=value, name=name), value


def technical_text(r: random.Random, p: Planter) -> str:
    """An intro and one to three snippets; blocks (fences, doctests, tables) stand on lines of their own."""
    text, after_block = r.choice(INTROS), False
    for snippet in (r.choice(TECHNICAL)(r, p) for _ in range(r.randint(1, 3))):
        block = "\n" in snippet or snippet.startswith((">>>", "```", "|"))
        text += ("\n\n" if block or after_block or r.random() < 0.5 else " ") + snippet
        after_block = block
    return text


def generate(count: int = 700, seed: int = 0, technical_share: float = 0.45) -> list[Row]:
    """`count` labelled rows: about `technical_share` technical without personal data, the rest prose with some."""
    r = random.Random(seed)
    p = Planter(r)
    kinds = list(SENTENCES)
    rows: list[Row] = []
    for index in range(count):
        if r.random() < technical_share:
            rows.append(Row(technical_text(r, p)))
            continue
        chosen = [kinds[index % len(kinds)]] + ([r.choice(kinds)] if r.random() < 0.3 else [])
        name = r.choice(NAMES)
        planted: dict[str, list[str]] = {}
        sentences = []
        for kind in chosen:
            sentence, value = pii_sentence(r, p, kind, name)
            sentences.append(sentence)
            planted.setdefault(kind, []).append(value)
        full, short = GENRES[r.choice(list(GENRES))]
        template = full if r.random() < 0.6 else short
        text = template.format(pii=" ".join(sentences), tech=technical_text(r, p), name=name,
                               date=f"2024-0{r.randint(1, 9)}-{r.randint(10, 28)}", inv=p.digits(6))
        rows.append(Row(text, planted))
    return rows
