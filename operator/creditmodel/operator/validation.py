"""What a valid CreditModel field looks like, as pure checks the typed spec (model.py) runs and the
CRD repeats in its OpenAPI patterns and CEL rules, so that the operator refuses what the API server
refuses. The regular expressions are written once here in the dialect both sides share (RE2 and
Python `re`: no look-arounds, `[.]` rather than escapes); tests/operator/test_admission.py checks that
the CRD carries the same text and that both sides refuse the same list of bad CreditModels.

Nothing in a CreditModel reaches a command line or an address the operator or its Jobs call except
through these checks: URIs by scheme and shape, no link-local or cloud metadata hosts, bounded
lengths everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, localcontext
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

# --- names ----------------------------------------------------------------------------------------

DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_SUBDOMAIN = rf"{DNS_LABEL}([.]{DNS_LABEL})*"
# KServe's InferenceService name rule (its webhook refuses others): a DNS-1035 label.
RESOURCE_NAME = r"[a-z]([-a-z0-9]*[a-z0-9])?"
NAME_MAX = 40
"""metadata.name: <name>-<8 hex>-predictor is the predictor Deployment and Service (<= 63). KServe's
host label <isvc>-predictor-<namespace> must fit 63 too: builders.isvc_name shortens the name in a
long namespace, and `name_problem` reports a namespace too long for any name."""
HOST_LABEL_MAX = 63
ISVC_SUFFIX = len("-predictor-")
# An exact HTTPRoute hostname: lowercase DNS name, no wildcard, not an IP address (the top-level
# label starts with a letter).
HOSTNAME = rf"({DNS_LABEL}[.])*[a-z]([-a-z0-9]{{0,61}}[a-z0-9])?"

# --- URLs the operator or its pods call -----------------------------------------------------------

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}([.]{_OCTET}){{3}}"
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_URL_HOST = rf"({HOSTNAME}|{_IPV4}|\[[0-9a-f:]{{2,39}}\])"
HTTP_URL = rf"https?://{_URL_HOST}(:{_PORT})?(/[-A-Za-z0-9._~%+=:@/]*)?"
"""http(s)://HOST[:PORT][/PATH]: no credentials, query or fragment; HOST a lowercase DNS name, a
dotted-quad IPv4 address or a bracketed lowercase IPv6 address (so no decimal, octal or hex spellings
of an address slip past the check below)."""
METADATA_URL = (
    r"https?://(169[.]254[.][0-9.]*|100[.]100[.]100[.]200"
    r"|\[(fe[89ab][0-9a-f]:|fd00:0?ec2:|[0-9a-f:]*:a9fe[:\]])[^/]*"
    r"|metadata|metadata[.]google[.]internal|metadata[.]goog|instance-data"
    r"|instance-data[.]ec2[.]internal)([:/].*)?"
)
"""Link-local and cloud metadata hosts: 169.254.0.0/16 (AWS, Azure, GCP, OCI, ECS, EKS Pod
Identity), Alibaba's 100.100.100.200, IPv6 link-local fe80::/10, AWS's fd00:ec2::254 (its /32),
169.254.x.x embedded in IPv6 (a9fe), and the metadata server names."""

# --- storage URIs ---------------------------------------------------------------------------------

_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
_SEGMENT = r"[A-Za-z0-9_=+-][A-Za-z0-9._=+-]{0,254}"
S3_URI = rf"s3://{_BUCKET}(/{_SEGMENT})*"
"""s3://BUCKET[/KEY/...]: a valid bucket name; key segments of letters, digits and . _ = + -, none
empty, none starting with a dot (so no `.`, `..` or hidden staging names), no trailing slash."""
BAD_BUCKET = r"s3://([^/]*([.][.]|[.]-|-[.])[^/]*|[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+)(/.*)?"
"""Bucket names S3 refuses beyond the pattern: adjacent dots, a dot beside a hyphen, an IP address."""
LOCAL_ROOTS = ("opt", "mnt", "srv", "data", "models")
LOCAL_PATH = rf"(file://)?/({'|'.join(LOCAL_ROOTS)})(/{_SEGMENT})+"
"""A path inside the image (the predictor's own bundles, /mnt/models where KServe mounts models):
absolute, under one of LOCAL_ROOTS, same segment rules as S3 keys."""
BUNDLE_URI = rf"({S3_URI}|{LOCAL_PATH})"
URI_MAX = 1024

# --- images, columns, quantities, cron ------------------------------------------------------------

_PATH_COMPONENT = r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?([.][A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
IMAGE = (
    rf"({_DOMAIN}(:[0-9]{{1,5}})?/)?{_PATH_COMPONENT}(/{_PATH_COMPONENT})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?"
)
"""An OCI image reference: [registry[:port]/]path[:tag][@sha256:digest]."""
IMAGE_MAX = 512
COLUMN = r"[^-\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*"
"""A CSV column name or label value: printable, not starting with `-` (it follows a flag)."""
COLUMN_MAX = 256
QUANTITY = r"[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?"
"""A non-negative Kubernetes resource quantity (the API server's CEL `isQuantity`, minus signs)."""

_CRON_VALUES = (
    (r"[0-5]?[0-9]", False),
    (r"[01]?[0-9]|2[0-3]", False),
    (r"0?[1-9]|[12][0-9]|3[01]", True),
    (r"0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)", False),
    (r"0?[0-6]|(?i:sun|mon|tue|wed|thu|fri|sat)", True),
)


def _cron_field(values: str, question: bool) -> str:
    item = rf"(\*{r'|[?]' if question else ''}|({values})(-({values}))?)(/[1-9][0-9]?)?"
    return rf"{item}(,{item})*"


CRON = r"@(yearly|annually|monthly|weekly|daily|midnight|hourly)|" + " +".join(
    _cron_field(values, question) for values, question in _CRON_VALUES
)
"""Five cron fields, each value inside its range (minute 0-59, hour 0-23, day 1-31, month 1-12 or
jan-dec, weekday 0-6 or sun-sat), `*` (`?` for the days), lists, ranges, steps; or a macro."""
CRON_MAX = 128


def matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


def _check(pattern: str, message: str, max_length: int) -> Callable[[str], str]:
    def check(text: str) -> str:
        if len(text) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        if not matches(pattern, text):
            raise ValueError(message)
        return text

    return check


def http_url(text: str) -> str:
    if len(text) > URI_MAX:
        raise ValueError(f"must be at most {URI_MAX} characters")
    if not matches(HTTP_URL, text):
        raise ValueError(HTTP_URL_MESSAGE)
    if matches(METADATA_URL, text):
        raise ValueError(METADATA_MESSAGE)
    return text


def s3_uri(text: str) -> str:
    if len(text) > URI_MAX:
        raise ValueError(f"must be at most {URI_MAX} characters")
    if not matches(S3_URI, text):
        raise ValueError(S3_MESSAGE)
    if matches(BAD_BUCKET, text):
        raise ValueError(BUCKET_MESSAGE)
    return text


def bundle_uri(text: str) -> str:
    """s3://BUCKET[/PREFIX], or a path inside the image (absolute or file://)."""
    if len(text) > URI_MAX:
        raise ValueError(f"must be at most {URI_MAX} characters")
    if not matches(BUNDLE_URI, text):
        raise ValueError(BUNDLE_MESSAGE)
    if matches(BAD_BUCKET, text):
        raise ValueError(BUCKET_MESSAGE)
    return text


def same_bundle(one: str, other: str) -> bool:
    """Whether two bundle URIs name the same place: a path inside the image is the same with or
    without `file://` (as the predictor and training read them)."""
    return one.removeprefix("file://") == other.removeprefix("file://")


HTTP_URL_MESSAGE = (
    "must be http(s)://HOST[:PORT][/PATH] with a lowercase DNS name, IPv4 or [IPv6] host"
    " (no credentials, query or fragment)"
)
METADATA_MESSAGE = "must not name a link-local or cloud metadata address"
S3_MESSAGE = (
    "must be s3://BUCKET[/PREFIX]: a bucket name (3-63 of a-z 0-9 . -), then segments of"
    " letters, digits and . _ = + - (none empty, none starting with a dot; no trailing slash)"
)
BUCKET_MESSAGE = "the bucket name must not hold '..', '.-' or '-.' and must not be an IP address"
BUNDLE_MESSAGE = (
    "must be s3://BUCKET[/PREFIX] or a path inside the image under /opt, /mnt, /srv, /data or"
    " /models (optionally file://), with segments of letters, digits and . _ = + -"
    " (none empty, none starting with a dot)"
)
IMAGE_MESSAGE = "must be an image reference: [registry[:port]/]path[:tag][@sha256:digest]"
COLUMN_MESSAGE = "must be printable text without control characters, not starting with '-'"
CRON_MESSAGE = (
    "must be five cron fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or"
    " jan-dec, day of week 0-6 or sun-sat) or a macro such as @hourly"
)
DNS_LABEL_MESSAGE = "must be a DNS label (lowercase letters, digits and '-', at most 63)"
DNS_SUBDOMAIN_MESSAGE = "must be a lowercase DNS name (RFC 1123 subdomain, at most 253)"
HOSTNAME_MESSAGE = (
    "must be an exact lowercase DNS hostname: no wildcard, port, trailing dot or IP address"
)

image = _check(IMAGE, IMAGE_MESSAGE, IMAGE_MAX)
column = _check(COLUMN, COLUMN_MESSAGE, COLUMN_MAX)
dns_label = _check(DNS_LABEL, DNS_LABEL_MESSAGE, 63)
dns_subdomain = _check(DNS_SUBDOMAIN, DNS_SUBDOMAIN_MESSAGE, 253)
hostname = _check(HOSTNAME, HOSTNAME_MESSAGE, 253)


def quantity(value: int | str) -> int | str:
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise ValueError("must be a non-negative quantity")
    if isinstance(value, str) and not matches(QUANTITY, value):
        raise ValueError(f"{value[:64]!r} is not a non-negative quantity (e.g. 500m, 1, 512Mi)")
    return value


_SUFFIXES = {
    **{s: Decimal(1000) ** i for i, s in enumerate(("", "k", "M", "G", "T", "P", "E"))},
    **{s: Decimal(1024) ** i for i, s in enumerate(("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")) if s},
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
}
# Exact arithmetic whatever the digits and exponent (the API server's are int32).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def quantity_value(value: int | str) -> Decimal:
    """A valid quantity as an exact number, for comparing requests with limits and the API
    server's spelling with ours. As floats, 350m and 0.35 differed (a valid spec was refused),
    1e400 overflowed, and 1E (exa) was read as an exponent with no digits."""
    if isinstance(value, int):
        return Decimal(value)
    found = re.fullmatch(r"[+]?([0-9.]+)(?:([eE][+-]?[0-9]+)|([A-Za-z]*))", value)
    if found is None:  # pragma: no cover - checked by `quantity` first
        raise ValueError(value)
    number, exponent, suffix = found.groups()
    with localcontext(_EXACT):
        if exponent:
            return Decimal(number + exponent)
        return Decimal(number) * _SUFFIXES[suffix]


def name_problem(name: str, namespace: str) -> str | None:
    """Why KServe cannot serve a CreditModel of this name in this namespace, if it cannot: its
    webhook wants a DNS-1035 label, and its host label <isvc>-predictor-<namespace> is <= 63.
    `builders.isvc_name` shortens the name to fit, down to one letter and a digest, so only a
    namespace longer than NAMESPACE_MAX leaves no room (the CRD cannot see the namespace)."""
    if not matches(RESOURCE_NAME, name) or len(name) > NAME_MAX:
        return NAME_MESSAGE
    if len(namespace) > NAMESPACE_MAX:
        return (
            f"namespace {namespace!r} is {len(namespace)} characters: KServe's host label"
            f" <inferenceservice>-predictor-<namespace> must fit 63, which leaves no room for an"
            f" InferenceService name in namespaces longer than {NAMESPACE_MAX}; use a shorter one"
        )
    return None


NAMESPACE_MAX = HOST_LABEL_MAX - ISVC_SUFFIX - len("a-12345678")

NAME_MESSAGE = (
    f"metadata.name must start with a lowercase letter, hold only lowercase letters, digits and"
    f" '-', end with a letter or digit, and be at most {NAME_MAX} characters (KServe"
    " InferenceService names are <name>-<8 hex>, a DNS-1035 label)"
)

# --- cron -------------------------------------------------------------------------------------------

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _WEEKDAYS),  # 0 is Sunday; Kubernetes' parser refuses 7
)
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _cron_value(text: str, low: int, names: tuple[str, ...]) -> int | None:
    if text.isdigit():
        return int(text)
    lowered = text.lower()
    return names.index(lowered) + low if lowered in names else None


def cron_problem(schedule: str) -> str | None:
    """What the CronJob controller would refuse in a five-field schedule, named precisely. The CRD
    refuses the same shapes and out-of-range values (CRON); only a range that runs backwards
    (`5-2`) gets past it, and the operator reports that as Degraded instead of writing the CronJob."""
    if len(schedule) > CRON_MAX:
        return f"longer than {CRON_MAX} characters"
    if schedule.strip() in _CRON_MACROS:
        return None
    fields = schedule.split()
    if len(fields) != len(_CRON_FIELDS):
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            span, _, step = part.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                return f"{what}: step {step!r} is not a positive number"
            if span in ("*", "?"):
                continue
            values = [_cron_value(end, low, names) for end in span.split("-", 1)]
            bounds = [v for v in values if v is not None and low <= v <= high]
            if len(bounds) != len(values):
                return f"{what}: {part!r} is outside {low}-{high}"
            if bounds != sorted(bounds):
                return f"{what}: range {span!r} runs backwards"
    return None


# --- field types of the typed spec (model.py) ------------------------------------------------------
# A spec the API server would refuse is refused there too, naming the field, should one ever get past
# it (an object stored under an older CRD, a test, a dry run of the operator).

BundleURI = Annotated[str, AfterValidator(bundle_uri)]
"""s3://BUCKET[/PREFIX] or a path inside the image (also the training data's URI)."""
S3URI = Annotated[str, AfterValidator(s3_uri)]
HttpURL = Annotated[str, AfterValidator(http_url)]
Image = Annotated[str, AfterValidator(image)]
Column = Annotated[str, Field(min_length=1), AfterValidator(column)]
DNSLabel = Annotated[str, AfterValidator(dns_label)]
DNSSubdomain = Annotated[str, AfterValidator(dns_subdomain)]
Hostname = Annotated[str, AfterValidator(hostname)]
Quantity = Annotated[int | str, AfterValidator(quantity)]
ResourceName = Literal["cpu", "memory", "ephemeral-storage"]
Percent = Annotated[int, Field(ge=1, le=99)]
