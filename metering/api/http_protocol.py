"""uvicorn's httptools protocol, answering unparsable requests with a problem document.

uvicorn answers a request its HTTP parser rejects (an invalid request line or method token, a
malformed or duplicated Content-Length, a bad chunk, a space or NUL in the target, an unknown
HTTP version, an HTTP/2 preface) itself, before the application sees anything, with a plain-text
"Invalid HTTP request received.". Every other refusal of the API is an
`application/problem+json` document; this subclass makes these 400s one too, with the same
security headers, so a client parsing our errors never meets a different format. The
connection is still closed after it (the parser cannot find the next request's start).

`send_400_response` is the one method uvicorn calls for these (uvicorn 0.54);
tests/api/test_malformed_http.py sends such requests to a real server, so a uvicorn that
renames it fails there rather than silently going back to plain text.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from metering.api.app import SECURITY_HEADERS
from metering.api.problems import PROBLEM_TYPE, Problem

MALFORMED = Problem(
    400,
    "malformed_http",
    "the request is not valid HTTP/1.1 (request line, method, header, Content-Length or "
    "chunked encoding), so it was not read; the connection is closed",
)


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` whose parser-level 400 is a problem document."""

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(MALFORMED.document())
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in [*self.server_state.default_headers, *SECURITY_HEADERS]:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + PROBLEM_TYPE.encode() + b"\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
