"""stt/tts sizes the program controls: `seconds=`, and for tts the producing LLM's out=."""

import re
import subprocess
import sys

import pytest

PROGRAM = """agent a(q: audio) -> audio {{
  text = stt(whisper-small, q{stt})
  ans  = llm(llama3-8b, text, in=512, out=40)
  return tts(piper-medium, {tts_arg}{tts})
}}
"""


def decomposed(tmp_path, stt="", tts="", tts_arg="ans"):
    path = tmp_path / "s.agent"
    path.write_text(PROGRAM.format(stt=stt, tts=tts, tts_arg=tts_arg))
    r = subprocess.run([sys.executable, "-m", "agentc", "compile", str(path), "--emit", "decomposed"],
                       capture_output=True, text=True)
    return r


def attr(text, op, name):
    line = next(ln for ln in text.splitlines() if f'"{op}"' in ln)
    m = re.search(rf"\b{name} = ([0-9.e+]+)", line)
    return float(m.group(1))


@pytest.mark.parametrize("stt, tts, tts_arg, stt_ms, tts_tokens, tts_ms", [
    ("", "", "ans", 5000, 40, 2400),  # defaults: 5 s of audio; tts speaks the LLM's out=40
    (", seconds=8", "", "ans", 8000, 40, 2400),
    (", seconds=500ms", ", seconds=3", "ans", 500, 50, 3000),  # 3 s at 60 ms per token
    ("", "", "text", 5000, 128, 7680),  # text not written by an llm: 128 tokens
])
def test_sizes_reach_the_granular_ops(tmp_path, stt, tts, tts_arg, stt_ms, tts_tokens, tts_ms):
    r = decomposed(tmp_path, stt, tts, tts_arg)
    assert r.returncode == 0, r.stderr
    assert attr(r.stdout, "stt.encode", "audio_ms") == stt_ms
    assert attr(r.stdout, "stt.decode", "tokens") == max(1, int(stt_ms / 1000 * 4))  # 4 words a second
    assert attr(r.stdout, "tts.synthesize", "tokens") == tts_tokens
    assert attr(r.stdout, "tts.vocode", "audio_ms") == tts_ms


@pytest.mark.parametrize("stt, tts, message", [
    (", seconds=0", "", "stt seconds must be positive"),
    ("", ", seconds=4KB", "tts seconds must be a time"),
    ("", ", secs=4", "unknown argument 'secs' for tts; expected one of: seconds"),
])
def test_bad_sizes_are_located_errors(tmp_path, stt, tts, message):
    r = decomposed(tmp_path, stt, tts)
    assert r.returncode == 1 and message in r.stderr and "s.agent:" in r.stderr and "Traceback" not in r.stderr
