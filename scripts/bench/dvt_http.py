"""One HTTP request to a Dovetail node on 127.0.0.1, for the Python bench scripts beside this file."""
import http.client
import json
import urllib.error
import urllib.request


def request(port, method, path, token, body=None, timeout=10):
    """(status, answer): the answer is parsed JSON when the node sent JSON, else the raw bytes;
    status None (and the error as text) when no answer came."""
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                               headers={"Authorization": f"Bearer {token}",
                                        "content-type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            raw = resp.read()
            is_json = resp.headers.get("content-type", "").startswith("application/json")
            return resp.status, (json.loads(raw) if raw and is_json else raw)
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)
