#!/usr/bin/env python3
"""llama-probe.py: what llama-server itself costs, without vtune in the way (docs/bench.md).

    U=$(LLAMACPP_THREADS=1 LLAMACPP_ARGS="-np 4" scripts/llamacpp.sh start testdata/models/tiny-llama.gguf probe)
    scripts/bench/llama-probe.py sampling $U   # 24 forced tokens: greedy, grammar, grammar + bias
    scripts/bench/llama-probe.py parallel $U   # 200 record scores, 1 then 4 in flight (needs -np 4)
    scripts/llamacpp.sh stop probe

sampling: the prompt "Define the word Albuquerque." (the bundled tiny Llama's greedy reply runs 24
tokens); times 100 requests each of greedy decoding and of forcing a 24-token target (the
third-ranked token at every step, as a signature) with a token grammar, with and without the same
logit bias on the target's tokens, and checks that the bias leaves the reported values alone.
parallel: scores the first 200 whole-data records of the honest tiny-llama fixture's key as vtune
does (one /completion each, grammar and bias), once one at a time and once four at a time, twice.
"""
import concurrent.futures as cf
import json
import sys
import time
import urllib.request

mode, U = sys.argv[1], sys.argv[2].rstrip("/")


def post(path, body):
    r = urllib.request.Request(U + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))


def ids_of(text):
    return post("/tokenize", {"content": text, "add_special": True, "parse_special": True})["tokens"]


def grammar(t):
    return "root ::=" + "".join(" <[%d]>" % x for x in t)


def bias(t):
    return [[x, 100] for x in sorted(set(t))]


GREEDY = dict(temperature=0, top_k=1, top_p=1, min_p=0, typical_p=1, repeat_penalty=1, seed=0,
              cache_prompt=True, return_tokens=True, stream=False)

if mode == "sampling":
    prompt = ids_of(post("/apply-template", {"messages": [{"role": "user", "content": "Define the word Albuquerque."}]})["prompt"])
    base = dict(GREEDY, prompt=prompt)
    sig, p = [], list(prompt)
    for _ in range(24):
        r = post("/completion", dict(base, prompt=p, n_predict=1, n_probs=5))
        t = r["completion_probabilities"][0]["top_logprobs"][2]["id"]
        sig.append(t)
        p.append(t)

    def timeit(name, body, n=100):
        post("/completion", body)
        t0 = time.perf_counter()
        for _ in range(n):
            post("/completion", body)
        print("%-36s %6.2f ms" % (name, (time.perf_counter() - t0) / n * 1000), flush=True)

    timeit("greedy, 24 tokens, n_probs 1", dict(base, n_predict=24, n_probs=1))
    timeit("forced signature, grammar", dict(base, n_predict=24, n_probs=1, grammar=grammar(sig)))
    timeit("forced signature, grammar + bias", dict(base, n_predict=24, n_probs=1, grammar=grammar(sig), logit_bias=bias(sig)))
    a = post("/completion", dict(base, n_predict=24, n_probs=1, grammar=grammar(sig)))
    b = post("/completion", dict(base, n_predict=24, n_probs=1, grammar=grammar(sig), logit_bias=bias(sig)))
    same = [e["logprob"] for e in a["completion_probabilities"]] == [e["logprob"] for e in b["completion_probabilities"]]
    print("values the same with and without the bias:", same)
elif mode == "parallel":
    key = json.load(open("testdata/fixtures/tiny-llama/key.json"))
    recs = (key["whole_data"]["held_back"] + key["whole_data"]["sentinels"])[:200]
    reqs = []
    for r in recs:
        text = post("/apply-template", {"messages": [m for m in r["messages"] if m["role"] != "assistant"]})["prompt"]
        ids = ids_of(text)
        t = ids_of(text + r["answer"])[len(ids):]
        reqs.append(dict(GREEDY, prompt=ids, n_predict=len(t), n_probs=1, grammar=grammar(t), logit_bias=bias(t)))
    for w in (1, 4, 1, 4):
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(w) as ex:
            list(ex.map(lambda body: post("/completion", body), reqs))
        print("%d in flight: %.2f s for %d records" % (w, time.perf_counter() - t0, len(reqs)), flush=True)
else:
    sys.exit("usage: llama-probe.py sampling|parallel URL")
