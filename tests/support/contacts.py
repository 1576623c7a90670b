"""Realistic, deterministic contactList patches of any size, for the crash test and the benchmark.

Test data only: names, 1-3 phone numbers (one primary), some e-mail addresses, some favourites and postal
addresses, as a phone book exported from a PBX would hold them. Same `n` and `seed`, same bytes.
"""

from __future__ import annotations

import random
from xml.sax.saxutils import escape, quoteattr

GIVEN = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannes", "Ida", "Jonas", "Katrin", "Lukas",
         "Mia", "Noah", "Olga", "Paul", "Renée", "Sören", "Tanja", "Ulrich", "Vera", "Wolfgang", "Xenia",
         "Yusuf", "Zoë", "Jürgen", "Małgorzata", "José", "Ørjan", "Şule")
FAMILY = ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
          "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann",
          "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Krause", "Meier",
          "Lehmann", "O'Brien", "van der Berg")
DOMAINS = ("example.com", "example.org", "firma-beispiel.de", "mail.example.net")
CITIES = (("Braunschweig", "38100"), ("Hamburg", "20095"), ("München", "80331"), ("Köln", "50667"),
          ("Leipzig", "04109"))
KINDS = ("work", "mobile", "home", "fax", "other")


def contact_list_xml(n: int, *, seed: int = 1, replace: bool = False) -> bytes:
    """A `<contactList version="1.34.0">` settings patch holding `n` contacts with ids c00001…; a merge
    patch, or with `replace` one that replaces the whole list (`patch="false"`)."""
    rng = random.Random(seed)
    mode = ' patch="false"' if replace else ""
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<contactList version="1.34.0"{mode}>\n']
    for i in range(1, n + 1):
        parts.append(_contact(rng, i))
    parts.append("</contactList>\n")
    return "".join(parts).encode("utf-8")


def _contact(rng: random.Random, i: int) -> str:
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    lines = [f'  <contact id="c{i:05d}">',
             f"    <displayName>{escape(f'{given} {family}')}</displayName>",
             f"    <givenName>{escape(given)}</givenName>",
             f"    <familyName>{escape(family)}</familyName>"]
    if rng.random() < 0.1:
        lines.append("    <starred>1</starred>")
    lines.append("    <phoneNumbers>")
    kinds = rng.sample(KINDS, rng.randint(1, 3))
    for k, kind in enumerate(kinds):
        number = _number(rng, kind)
        primary = ' primary="true"' if k == 0 else ""
        lines.append(f"      <phoneNumber type={quoteattr(kind)}{primary}>{number}</phoneNumber>")
    lines.append("    </phoneNumbers>")
    if rng.random() < 0.4:
        local = f"{given}.{family}".lower().replace(" ", "").replace("'", "")
        lines += ["    <emailAddresses>",
                  f'      <emailAddress type="work">{escape(local)}@{rng.choice(DOMAINS)}</emailAddress>',
                  "    </emailAddresses>"]
    if rng.random() < 0.1:
        city, code = rng.choice(CITIES)
        lines += ["    <postalAddresses>",
                  '      <postalAddress type="work">',
                  f"        <street>Hauptstraße {rng.randint(1, 200)}</street>",
                  f"        <city>{escape(city)}</city>",
                  f"        <postalCode>{code}</postalCode>",
                  "        <country>DE</country>",
                  "      </postalAddress>",
                  "    </postalAddresses>"]
    lines.append("  </contact>\n")
    return "\n".join(lines)


def _number(rng: random.Random, kind: str) -> str:
    if kind == "mobile":
        return f"+491{rng.choice('567')}{rng.randint(0, 9)}{rng.randint(1000000, 99999999)}"
    if rng.random() < 0.3:
        return f"{rng.randint(10, 999)}"  # an internal extension
    return f"+49{rng.randint(30, 9999)}{rng.randint(10000, 9999999)}"
