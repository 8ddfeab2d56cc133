"""End-to-end test of `kvcc serve --device cpu` with the real `openai` client (a test oracle of
the wire format): starts servers on free local ports and checks models, completions, chat,
streaming, n, stop strings, seeds, logprobs, batch invariance over 64 concurrent streams,
disconnects giving blocks back, 429 under a flood, every error status and SIGTERM.

    python serve_e2e.py KVCC_BINARY MODEL_DIR
Prints one line per check; exits non-zero on the first failure.
"""
import concurrent.futures
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai

KEY = "test-key"
MODEL = "stories"


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what.split("\n")[0][:120], flush=True)


class Server:
    def __init__(self, kvcc, model, *extra):
        self.proc = subprocess.Popen(
            [kvcc, "serve", model, "--device", "cpu", "--port", "0", "--model-name", MODEL,
             "--chat-template", "llama2", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://([0-9.]+):(\d+)", line)
        if not m:
            raise AssertionError("kvcc serve did not start: " + line + self.proc.stderr.read())
        self.url = "http://%s:%s" % (m.group(1), m.group(2))
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def client(self, key=KEY):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)

    def raw(self, method, path, body=None, key=KEY, data=None):
        """(status, body text) of one plain HTTP request."""
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = "Bearer " + key
        if data is None and body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name):
        _, text = self.raw("GET", "/metrics")
        m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
        return int(m.group(1)) if m else 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def completion(c, prompt, **kw):
    kw.setdefault("max_tokens", 24)
    kw.setdefault("temperature", 0)
    return c.completions.create(model=MODEL, prompt=prompt, **kw)


def stream_text(c, prompt, **kw):
    kw.setdefault("max_tokens", 24)
    kw.setdefault("temperature", 0)
    texts, finish = {}, {}
    for chunk in c.completions.create(model=MODEL, prompt=prompt, stream=True, **kw):
        for ch in chunk.choices:
            texts[ch.index] = texts.get(ch.index, "") + ch.text
            if ch.finish_reason:
                finish[ch.index] = ch.finish_reason
    return texts, finish


def error_status(fn):
    try:
        fn()
    except openai.APIStatusError as e:
        return e.status_code
    return 200


PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went", "One day, a bird",
           "Tom had a red ball", "The sun was", "Mom said", "There was a big tree"]


def burst_check(s):
    """Clients connecting all at once are all answered: httplib's own listen backlog of 5
    overflowed under such bursts and requests failed with a closed connection."""
    n = 64  # the queue holds them all
    barrier = threading.Barrier(n)
    request = ("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nConnection: close\r\nContent-Length: %d"
               "\r\n\r\n%s")
    body = json.dumps({"model": MODEL, "prompt": [1, 400], "max_tokens": 1})
    host, port = s.url[len("http://"):].split(":")

    def one(_):
        barrier.wait()
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall((request % (KEY, len(body), body)).encode())
            reply = b""
            while True:
                part = sock.recv(65536)
                if not part:
                    break
                reply += part
        return reply.split(b" ", 2)[1] if reply.startswith(b"HTTP/1.1 ") else reply[:40]

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        statuses = list(pool.map(one, range(n)))
    check(statuses == [b"200"] * n, "%d clients connecting at once all get 200 (%s)" %
          (n, sorted(set(statuses))))


def main_server_checks(kvcc, model):
    s = Server(kvcc, model, "--api-keys", KEY, "--max-batch", "64", "--max-queue", "64",
               "--max-body-bytes", "65536")
    c = s.client()
    try:
        check([m.id for m in c.models.list().data] == [MODEL], "GET /v1/models lists the model")
        burst_check(s)
        r = completion(c, "Once upon a time")
        text = r.choices[0].text
        check(len(text) > 0 and r.choices[0].finish_reason == "length" and
              r.usage.completion_tokens == 24 and r.usage.prompt_tokens > 0,
              "completion: 24 greedy tokens, usage counted: %r" % text)
        streamed, finish = stream_text(c, "Once upon a time")
        check(streamed[0] == text and finish[0] == "length",
              "streamed completion chunks add up to the non-streaming text")

        chat_kw = dict(model=MODEL, messages=[{"role": "user", "content": "Tell a story"}],
                       max_tokens=20, temperature=0)
        cr = c.chat.completions.create(**chat_kw)
        ctext = cr.choices[0].message.content
        check(cr.choices[0].message.role == "assistant" and len(ctext) > 0, "chat completion")
        parts, roles, usage = [], [], None
        for chunk in c.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                               **chat_kw):
            if chunk.usage:
                usage = chunk.usage
            for ch in chunk.choices:
                parts.append(ch.delta.content or "")
                roles.append(ch.delta.role)
        check("".join(parts) == ctext and roles[0] == "assistant",
              "streamed chat deltas add up to the chat message")
        check(usage is not None and usage.completion_tokens == cr.usage.completion_tokens,
              "stream_options.include_usage sends the usage")

        r2 = completion(c, "Once upon a time", n=2, temperature=1.0, seed=11, max_tokens=20)
        texts = [ch.text for ch in sorted(r2.choices, key=lambda ch: ch.index)]
        check(len(texts) == 2 and texts[0] != texts[1], "n=2 gives two different samples")
        again = completion(c, "Once upon a time", n=2, temperature=1.0, seed=11, max_tokens=20)
        check([ch.text for ch in sorted(again.choices, key=lambda ch: ch.index)] == texts,
              "the same seed reproduces both samples")
        other = completion(c, "Once upon a time", temperature=1.0, seed=12, max_tokens=20)
        check(other.choices[0].text != texts[0], "another seed gives another sample")
        st, _ = stream_text(c, "Once upon a time", n=2, temperature=1.0, seed=11, max_tokens=20)
        check([st[0], st[1]] == texts, "streamed n=2 equals the non-streaming samples")

        # A stop string from the middle of the greedy text: the output ends right before it.
        long = completion(c, "Once upon a time", max_tokens=48).choices[0].text
        p = len(long) // 2
        while long.find(long[p:p + 5]) != p:
            p += 1
        stop = long[p:p + 5]
        r = completion(c, "Once upon a time", max_tokens=48, stop=[stop, "zzzz"])
        check(r.choices[0].text == long[:p] and r.choices[0].finish_reason == "stop",
              "stop string %r cuts the text before it" % stop)
        st, fin = stream_text(c, "Once upon a time", max_tokens=48, stop=stop)
        check(st[0] == long[:p] and fin[0] == "stop", "a streamed stop string cuts the same text")

        lp = completion(c, "Once upon a time", logprobs=3, max_tokens=8)
        l = lp.choices[0].logprobs
        check(len(l.tokens) == 8 and len(l.top_logprobs[0]) == 3 and
              all(v <= 0 for v in l.token_logprobs) and "".join(l.tokens) == lp.choices[0].text,
              "completion logprobs: 8 tokens, 3 alternatives each")
        clp = c.chat.completions.create(logprobs=True, top_logprobs=2, **chat_kw)
        check(len(clp.choices[0].logprobs.content) == clp.usage.completion_tokens and
              len(clp.choices[0].logprobs.content[0].top_logprobs) == 2, "chat logprobs")

        # 64 concurrent greedy streams, each equal to the same request alone.
        prompts = [PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)) for i in range(64)]
        alone = [completion(c, p, max_tokens=32).choices[0].text for p in prompts]
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            together = list(pool.map(lambda p: stream_text(c, p, max_tokens=32)[0][0], prompts))
        bad = [i for i in range(64) if together[i] != alone[i]]
        check(not bad, "64 concurrent greedy streams equal the requests alone (differ: %s)" % bad)

        # A client that goes away mid-stream gives its blocks back (4 x 480 tokens take well
        # over a second, so it is cancelled, not finished).
        body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 480, "n": 4,
                "ignore_eos": True, "stream": True}
        req = urllib.request.Request(s.url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer " + KEY,
                                              "Content-Type": "application/json"})
        cancelled = s.metric('kvcc_requests_finished_total{reason="cancelled"}')
        resp = urllib.request.urlopen(req, timeout=30)
        resp.readline()
        check(s.metric("kvcc_kv_blocks_used") > 0, "a running stream holds blocks")
        resp.close()
        t0 = time.time()
        while s.metric("kvcc_kv_blocks_used") != 0 and time.time() - t0 < 5:
            time.sleep(0.01)
        took = time.time() - t0
        check(s.metric("kvcc_kv_blocks_used") == 0 and took < 1.0,
              "a disconnected stream's blocks are back in %.3f s" % took)
        check(s.metric('kvcc_requests_finished_total{reason="cancelled"}') == cancelled + 1,
              "the disconnected request counts as cancelled")

        # Errors.
        check(error_status(lambda: s.client(key="wrong").models.list()) == 401,
              "401 for a wrong API key")
        check(s.raw("GET", "/v1/models", key=None)[0] == 401, "401 without an API key")
        check(s.raw("GET", "/health", key=None)[0] == 200, "/health needs no key")
        check(error_status(lambda: c.completions.create(model="nope", prompt="a")) == 404,
              "404 for an unknown model")
        check(s.raw("GET", "/v1/nothing")[0] == 404, "404 for an unknown route")
        check(error_status(lambda: completion(c, "a", temperature="hot")) == 400,
              "400 for a wrongly typed field")
        status, text = s.raw("POST", "/v1/completions", data=b"{not json")
        check(status == 400 and "error" in json.loads(text), "400 for malformed JSON")
        check(error_status(lambda: completion(c, [5] * 600)) == 400, "400 for a prompt too long")
        check(error_status(lambda: completion(c, "a", max_tokens=600)) == 400,
              "400 for max_tokens beyond the context")
        status, text = s.raw("POST", "/v1/completions",
                             body={"model": MODEL, "prompt": "x" * 100000})
        check(status == 413 and "error" in json.loads(text), "413 for a body over the limit")
        check(error_status(lambda: c.chat.completions.create(
            model=MODEL, messages=[{"role": "wizard", "content": "a"}])) == 400,
            "400 for an unknown role")
    finally:
        code = s.stop()
    check(code == 0, "SIGTERM on an idle server exits 0")


def flood_checks(kvcc, model):
    s = Server(kvcc, model, "--max-batch", "2", "--max-queue", "2", "--shutdown-timeout", "1")
    c = s.client()
    try:
        def one(_):
            return error_status(lambda: completion(c, "Once upon a time", max_tokens=300,
                                                   extra_body={"ignore_eos": True}))
        health = []

        def poll():
            time.sleep(0.3)
            health.append(s.raw("GET", "/health")[0])
        t = threading.Thread(target=poll)
        t.start()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(one, range(16)))
        t.join()
        check(statuses.count(429) >= 8 and statuses.count(200) >= 4,
              "a flood past the queue gets 429s (statuses %s)" % sorted(statuses))
        check(health == [200], "/health answers during the flood")
        check(s.metric("kvcc_kv_blocks_used") == 0, "no blocks held after the flood")
        c.close()  # its idle keep-alive connections would hold the shutdown below

        # SIGTERM while a request runs: it ends within the deadline and the server exits 0.
        body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 500,
                "ignore_eos": True, "stream": True}
        req = urllib.request.Request(s.url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        resp = urllib.request.urlopen(req, timeout=30)
        resp.readline()
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        rest = resp.read().decode()
        check(rest.rstrip().endswith("data: [DONE]"), "the running stream still ends with [DONE]")
        code = s.proc.wait(timeout=30)
        check(code == 0 and time.time() - t0 < 5,
              "SIGTERM with a running request exits 0 in %.2f s" % (time.time() - t0))
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def main():
    kvcc, model = sys.argv[1], sys.argv[2]
    t0 = time.time()
    main_server_checks(kvcc, model)
    flood_checks(kvcc, model)
    print("all checks passed in %.1f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
