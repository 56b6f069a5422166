"""Personal data in document text: email and IP addresses replaced as FineWeb does, phone numbers optionally,
with the number replaced per document as attributes.

Emails and IPs are datatrove's own :class:`~datatrove.pipeline.formatters.PIIFormatter` (FineWeb's and
FineWeb-2's last step): its patterns, its check that an address is public (``ipaddress``'s ``is_global``),
and its replacements, used in turn (``email@example.com``, ``firstname.lastname@example.org``; six
addresses that answered no ping). winnow wraps each of its replacers' checks so that every replaced match
is counted: ``pii_emails``, ``pii_ips``; emails are replaced before IPs, as datatrove does, so an address
inside an email (``user@[1.2.3.4]``) is counted once, as an email. Phone numbers (off by default; datatrove has
none) are matched by :data:`PHONE`: a number written with a ``+`` country code, ``(555) 123-4567``, or
``555-123-4567`` / ``555.123.4567``, 8 to 15 digits in all (10 without a country code); dates and plain
digit runs are left alone. Every document gets the three counts (0 when nothing was replaced); revisit
stubs have no text and pass untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.formatters import PIIFormatter
from datatrove.pipeline.formatters.pii import PIIReplacer

from winnow.pipeline.manifest import PiiConfig
from winnow.pipeline.revisits import is_revisit_stub

EMAILS, IPS, PHONES = "pii_emails", "pii_ips", "pii_phones"
ATTRIBUTES: dict[str, pa.DataType] = {EMAILS: pa.int64(), IPS: pa.int64(), PHONES: pa.int64()}
PHONE = (
    r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}([.-])\d{3}\1\d{4})(?![\w.-]*\d)"
)


def is_phone(number: str) -> bool:
    """8 to 15 digits with a country code, exactly 10 without one."""
    digits = sum(c.isdigit() for c in number)
    return 8 <= digits <= 15 if number.startswith("+") else digits == 10


class _Counted:
    """A replacer's check that counts every match it lets through (all of them when it had no check)."""

    def __init__(self, check: Callable[[str], bool] | None) -> None:
        self.check = check
        self.count = 0

    def __call__(self, match: str) -> bool:
        passed = self.check is None or self.check(match)
        self.count += passed
        return passed


class PiiScrubber(PIIFormatter):
    """datatrove's PIIFormatter (plus phone numbers) that counts what it replaced in each document."""

    name = "🔒 PII"

    def __init__(self, config: PiiConfig) -> None:
        super().__init__(
            remove_emails=config.emails,
            remove_ips=config.ips,
            only_remove_public_ips=config.only_public_ips,
            email_replacement=tuple(config.email_replacement),
            ip_replacement=tuple(config.ip_replacement),
        )
        self.phones = config.phones
        self.phone_replacer = PIIReplacer(PHONE, tuple(config.phone_replacement), validator=is_phone)
        self.counters = {
            EMAILS: self._count(self.emails_replacer),
            IPS: self._count(self.ip_replacer),
            PHONES: self._count(self.phone_replacer),
        }

    @staticmethod
    def _count(replacer: PIIReplacer) -> _Counted:
        counter = _Counted(replacer.validator)
        replacer.validator = counter
        return counter

    def format(self, text: str) -> str:
        """datatrove's replacements (emails, then IPs), then phone numbers when asked for."""
        text = super().format(text)
        return self.phone_replacer.replace(text) if self.phones else text

    def scrub(self, doc: Document) -> None:
        """Replace in ``doc.text`` and set the three counts on its attributes."""
        for counter in self.counters.values():
            counter.count = 0
        doc.text = self.format(doc.text)
        attributes = doc.metadata.get("attributes") or {}
        doc.metadata["attributes"] = attributes
        for name, counter in self.counters.items():
            attributes[name] = counter.count
            if counter.count:
                self.stat_update(name, value=counter.count)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            if not is_revisit_stub(doc):
                with self.track_time():
                    self.scrub(doc)
            yield doc
