"""Secrets out of log lines: URLs with credentials or token-like query parameters are masked.

Every log line and error text of the delivery layer that shows a URL goes through `mask_url`
(upstream rule), so a backend URL like https://user:pw@host/?token=... can sit in a graph file
without its secret ever reaching a journal, a run report or a packet's meta.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = '***'

#: Query parameter names whose values are secrets (matched case-insensitively, as substrings).
_SECRET_PARAM = re.compile(r'(token|key|secret|pass|pwd|auth|sig|credential|session)', re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with password and secret-looking query values replaced by '***'.

    Keeps scheme, user name, host, port and path so the log stays useful. A URL that cannot be
    parsed is masked entirely rather than printed as is.
    """
    if not isinstance(url, str):
        return MASK
    if '://' not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if '@' in netloc:
            userinfo, host = netloc.rsplit('@', 1)
            user = userinfo.split(':', 1)[0]
            netloc = f'{user}:{MASK}@{host}' if ':' in userinfo else f'{MASK}@{host}'
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            masked = [(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs]
            query = urlencode(masked, safe='*')
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return f'<unparseable url {MASK}>'
