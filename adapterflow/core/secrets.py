"""Secrets: the values of secret-looking environment variables, and passwords inside URLs, replaced by
`<SECRET:NAME>` wherever text leaves the process (MLflow params, tags and artifacts; log lines).

A variable is secret when a word of its name (split at `_`, `-` and `.`) is one of SECRET_WORDS
(AWS_SECRET_ACCESS_KEY, HF_TOKEN, MLFLOW_TRACKING_PASSWORD), or when ADAPTERFLOW_SECRETS names it (a
comma-separated list: the user's own marks). Values shorter than MIN_SECRET_CHARS are left alone: replacing
every "1" or "true" would say nothing and hide everything. A password in a URL (postgresql://user:pw@host) is
replaced wherever such a URL appears; when it is long enough, also wherever it appears on its own, named
after the variable that holds the URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

SECRET_WORDS = frozenset({
    "KEY", "KEYS", "APIKEY", "SECRET", "SECRETS", "TOKEN", "TOKENS", "PASSWORD", "PASSWD", "PASS",
    "CREDENTIAL", "CREDENTIALS", "AUTH",
})
MARKED_SECRETS_ENV = "ADAPTERFLOW_SECRETS"
MIN_SECRET_CHARS = 6
URL_PASSWORD_NAME = "URL_PASSWORD"
# scheme://user:password@ ; the password stops at the first @, /, whitespace or quote
URL_PASSWORD = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@\"']*:)(?P<password>[^\s@/\"']+)@")


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret (TOKENIZERS_PARALLELISM does not)."""
    return any(word in SECRET_WORDS for word in re.split(r"[_\-.]+", name.upper()))


def secret_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """{secret value: the variable's name} from the environment (os.environ by default)."""
    environ = os.environ if environ is None else environ
    marked = {name.strip() for name in environ.get(MARKED_SECRETS_ENV, "").split(",") if name.strip()}
    found: dict[str, str] = {}
    for name, value in environ.items():
        secret = name in marked or (looks_secret(name) and name != MARKED_SECRETS_ENV)  # that one holds names
        if secret and len(value) >= MIN_SECRET_CHARS:
            found.setdefault(value, name)
        for match in URL_PASSWORD.finditer(value):
            if len(match["password"]) >= MIN_SECRET_CHARS:
                found.setdefault(match["password"], name)
    return found


def scrub_secrets(text: str, secrets: Mapping[str, str] | None = None) -> str:
    """The text with every secret value replaced by `<SECRET:NAME>` and every password in a URL hidden."""
    secrets = secret_values() if secrets is None else secrets
    if secrets:
        # longest first: a secret that contains another is replaced whole
        pattern = "|".join(re.escape(value) for value in sorted(secrets, key=len, reverse=True))
        text = re.sub(pattern, lambda match: f"<SECRET:{secrets[match[0]]}>", text)
    return URL_PASSWORD.sub(_hide_url_password, text)


def _hide_url_password(match: re.Match[str]) -> str:
    if match["password"].startswith("<SECRET:"):
        return match[0]  # already replaced by its variable's name
    return f"{match['prefix']}<SECRET:{URL_PASSWORD_NAME}>@"
