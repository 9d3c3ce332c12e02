"""``hwprune worker`` answers every malformed request with an error and keeps serving."""
from __future__ import annotations

import io
import json
import subprocess
import sys

from hwprune.devices._worker import serve

BAD_LINES = [
    "not json at all",
    "[1, 2, 3]",
    '"a string"',
    "42",
    "null",
    '{"no_cmd": 1}',
    '{"cmd": 7}',
    '{"cmd": "fly"}',
    '{"cmd": "measure"}',
    '{"cmd": "measure", "key": "k"}',
    '{"cmd": "measure", "key": "k", "onnx_b64": "***not base64***"}',
    '{"cmd": "measure", "key": 5, "onnx_b64": "AAAA"}',
    '{"cmd": "measure", "key": "k", "onnx_b64": "AAAA", "protocol": {"repeats": 0}}',
    '{"cmd": "measure", "key": "k", "onnx_b64": "AAAA", "protocol": {"bogus": 1}}',
    '{"cmd": "measure", "key": "k", "onnx_b64": "AAAA", "protocol": [1]}',
    '{"cmd": "measure", "key": "k", "onnx_b64": "AAAA"}',
    '{"cmd": "profile_nodes", "onnx_b64": "AAAA", "runs": "many"}',
    '{"cmd": "profile_nodes", "onnx_b64": "AAAA", "runs": 0}',
    '{"cmd": "describe", "threads": "two"}',
    '{"cmd": "describe", "threads": 0}',
]


def test_malformed_requests_get_errors_and_the_worker_keeps_serving():
    stdin = io.StringIO("\n".join(BAD_LINES) + '\n{"cmd": "describe"}\n{"cmd": "quit"}\n{"cmd": "describe"}\n')
    stdout = io.StringIO()
    assert serve(stdin, stdout) == 0
    answers = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert answers[0]["hwprune_worker"] == 1
    replies = answers[1:]
    assert len(replies) == len(BAD_LINES) + 1  # nothing after quit
    for line, reply in zip(BAD_LINES, replies):
        assert set(reply) == {"error"}, (line, reply)
        assert reply["error"], line
    assert replies[-1]["describe"]["runtime"] == "onnxruntime"  # the good request after them all


def test_worker_process_survives_bad_lines():
    p = subprocess.run([sys.executable, "-m", "hwprune", "worker"], input="[]\n{\"cmd\": 1}\n{\"cmd\": \"quit\"}\n",
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr
    replies = [json.loads(line) for line in p.stdout.splitlines()][1:]
    assert [set(r) for r in replies] == [{"error"}, {"error"}]
