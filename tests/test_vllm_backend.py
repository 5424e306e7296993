"""The vLLM backend's request mapping and output parsing, on vLLM's real classes (opt-in: `make test-vllm`).

The engine itself needs a GPU; the one stand-in here is an engine object whose generate() returns real
vllm.RequestOutput objects, so everything tteval does with vLLM's types runs for real.
"""

import pytest

vllm = pytest.importorskip("vllm", reason="opt-in: `make test-vllm` installs vLLM into .venv-vllm")
pytestmark = pytest.mark.vllm

from vllm.outputs import CompletionOutput, RequestOutput  # noqa: E402

try:
    from vllm.logprobs import Logprob  # noqa: E402
except ImportError:  # older vLLM
    from vllm.sequence import Logprob  # noqa: E402

from tteval.backends.base import Request  # noqa: E402
from tteval.backends.vllm import VLLMBackend, parse_request_output, to_sampling_params  # noqa: E402


def completion(index, text, ids, lps, finish="stop", stop_reason=None):
    logprobs = [{t: Logprob(logprob=lp, rank=1, decoded_token=f"<{t}>"), 999: Logprob(logprob=-9.0, rank=2, decoded_token="x")}
                for t, lp in zip(ids, lps)]  # fmt: skip
    return CompletionOutput(index=index, text=text, token_ids=ids, cumulative_logprob=sum(lps), logprobs=logprobs,
                            finish_reason=finish, stop_reason=stop_reason)  # fmt: skip


def request_output(rid, outputs):
    return RequestOutput(request_id=rid, prompt="p", prompt_token_ids=[1, 2, 3], prompt_logprobs=None, outputs=outputs,
                         finished=True)  # fmt: skip


def test_sampling_params_mapping():
    sp = to_sampling_params(Request(prompt="x", n=8, temperature=0.8, top_p=0.95, max_tokens=64, stop=("\n\n",), seed=3, top_logprobs=5))
    assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens, sp.seed, sp.logprobs) == (8, 0.8, 0.95, 64, 3, 5)
    assert sp.stop == ["\n\n"]
    assert to_sampling_params(Request(prompt="x")).logprobs == 0


def test_parse_request_output():
    out = parse_request_output(request_output("0", [completion(0, "ab", [5, 6], [-0.5, -0.25]),
                                                    completion(1, "c", [7], [-1.0], "length")]), want_top=2)  # fmt: skip
    assert [c.text for c in out] == ["ab", "c"]
    assert out[0].logprob == pytest.approx(-0.75) and out[0].token_logprobs == [-0.5, -0.25]
    assert out[0].tokens == ["<5>", "<6>"] and out[0].top_logprobs[0] == {"<5>": -0.5, "x": -9.0}
    assert out[1].finish_reason == "length" and out[0].prompt_tokens == 3


class OneCallEngine:
    """Stands in for vllm.LLM at the GPU boundary: returns real RequestOutputs and counts generate() calls."""

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, params, use_tqdm=False):
        self.calls += 1
        return [request_output(str(i), [completion(j, f"{p}:{j}", [j + 1], [-0.1]) for j in range(sp.n)])
                for i, (p, sp) in enumerate(zip(prompts, params))]  # fmt: skip


def test_generate_is_one_engine_call_for_many_requests():
    engine = OneCallEngine()
    b = VLLMBackend("m", engine=engine)
    res = b.generate([Request(prompt=f"q{i}", n=4) for i in range(5)])
    assert engine.calls == 1 and [len(r) for r in res] == [4] * 5 and res[2][3].text == "q2:3"
    assert b.usage.completion_tokens == 20
