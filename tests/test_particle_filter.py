"""Particle filtering: the odds-softmax weight map, resampling that concentrates on high reward, and a real run (the
filter's own draws and bookkeeping on the in-memory fake backend)."""

import hashlib

import numpy as np
import pytest
from fake_backend import FakeBackend

from tteval.searchers.particle_filter import Particle, _resample, particle_filter, resampling_probs
from tteval.verifiers.genrm import ScoreResult


def test_weight_map_matches_reference_toy_values():
    np.testing.assert_allclose(resampling_probs(np.array([0.9, 0.5, 0.1])), [0.8901, 0.0989, 0.0110], atol=1e-4)
    np.testing.assert_allclose(resampling_probs(np.array([0.9, 0.5, 0.1]), 0.5), [0.9877, 0.0122, 0.0002], atol=1e-4)


def test_weight_map_survives_rewards_of_exactly_zero_and_one():
    p = resampling_probs(np.array([0.0, 1.0, 0.5]))
    assert np.all(np.isfinite(p)) and p.sum() == pytest.approx(1) and p.argmax() == 1


def test_high_temperature_resampling_is_uniform():
    np.testing.assert_allclose(resampling_probs(np.array([0.9, 0.5, 0.1]), 1e6), [1 / 3] * 3, atol=1e-5)


def test_resampling_concentrates_on_high_reward_with_fixed_seed():
    pool = [Particle([f"p{i}"], [r]) for i, r in enumerate([0.95, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])]
    new = _resample(pool, np.random.default_rng(0), 1.0, True)
    texts = [p.text for p in new]
    assert len(new) == 8 and texts.count("p0") >= 5
    again = _resample(pool, np.random.default_rng(0), 1.0, True)
    assert [p.text for p in again] == texts
    new[0].rewards.append(0.1)
    assert pool[0].rewards == [0.95]  # resampled particles are copies


def test_finished_particles_are_kept_out_of_resampling_when_asked():
    pool = [Particle(["done"], [0.01], done=True), Particle(["a"], [0.9]), Particle(["b"], [0.1])]
    new = _resample(pool, np.random.default_rng(1), 1.0, resample_inactive=False)
    assert new[0].text == "done" and len(new) == 3


def test_reference_particle_competes_with_its_reward_at_the_same_depth_and_is_forked_there():
    # conditional SMC: with the free particles holding `depth` steps, the reference weighs its reward after as many
    ref = Particle(["s1\n\n", "s2\n\n", "s3"], [0.99, 0.01, 0.5], done=True)
    free = [Particle(["a\n\n"], [0.02]), Particle(["b\n\n"], [0.02])]
    # at depth 1 the reference's reward is 0.99: the free particles are redrawn from it, cut to its first step
    new = _resample(free, np.random.default_rng(0), 1.0, True, ref=ref, depth=1)
    assert len(new) == 2 and all(p.steps == ["s1\n\n"] and p.rewards == [0.99] and not p.done for p in new)
    assert ref.steps == ["s1\n\n", "s2\n\n", "s3"]  # the reference itself is never changed
    # at depth 2 its reward is 0.01: the free particles win
    new = _resample([Particle(["a\n\n", "x"], [0.5, 0.98]), Particle(["b\n\n", "y"], [0.5, 0.97])],
                    np.random.default_rng(0), 1.0, True, ref=ref, depth=2)  # fmt: skip
    assert {p.text for p in new} <= {"a\n\nx", "b\n\ny"}
    # past its end it keeps its final reward and a fork of it is the whole (finished) particle
    new = _resample([Particle(["a"] * 4, [0.01] * 4)], np.random.default_rng(0), 1.0, True, ref=ref, depth=4)
    assert new[0].steps == ref.steps and new[0].done and new[0].reward == 0.5


def test_a_fork_of_a_reference_counts_the_tokens_of_its_own_steps_only():
    ref = Particle(["s1\n\n", "s2\n\n", "s3"], [0.9, 0.5, 0.4], done=True, policy_tokens=17, step_lengths=[3, 5, 9])
    fork = ref.copy(1)
    assert (fork.policy_tokens, fork.path_tokens, fork.done) == (3, 3, False)  # not the whole reference's 17
    assert ref.copy().policy_tokens == 17


class KeywordScorer:
    """A deterministic process reward: high when the partial answer mentions the keyword."""

    def __init__(self, keyword):
        self.keyword, self.calls = keyword, 0

    def score(self, items, keys=None):
        self.calls += 1
        return [ScoreResult(0.9 if self.keyword in text else 0.1, tokens=1) for _, text in items]


class HashScorer:
    """A deterministic process reward in (0.45, 0.55), different for every text: a scripted, nearly flat reward."""

    def score(self, items, keys=None):
        digest = lambda t: int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) / 16**8  # noqa: E731
        return [ScoreResult(0.45 + 0.1 * digest(text), tokens=1) for _, text in items]


@pytest.fixture(scope="module")
def fake():
    """The in-memory fake backend (tests/fake_backend.py): the filter's own draws and bookkeeping, without a model."""
    return FakeBackend()


def test_particle_filter_on_the_cpu_model(cpu_backend):
    questions = ["What is 2 + 3?", "What is 10 - 4?"]
    prompts = [cpu_backend.apply_chat_template((("user", q),)) for q in questions]
    scorer = KeywordScorer("5")
    calls_before = cpu_backend.usage.calls
    results = particle_filter(cpu_backend, scorer, questions, prompts, 4, step_tokens=24, max_steps=3, seed=7)
    assert len(results) == 2
    for r in results:
        assert len(r.particles) == 4 and 0 <= r.selected < 4
        assert r.policy_tokens > 0 and r.verifier_tokens > 0 and 1 <= r.steps <= 3
        assert all(p.text for p in r.particles)
    # one batched backend call and one scorer call per step, over both problems
    assert cpu_backend.usage.calls - calls_before == max(r.steps for r in results)
    assert scorer.calls == max(r.steps for r in results)
    again = particle_filter(cpu_backend, KeywordScorer("5"), questions, prompts, 4, step_tokens=24, max_steps=3, seed=7)
    assert [p.text for p in again[0].particles] == [p.text for p in results[0].particles]


def test_particle_gibbs_keeps_a_reference_from_the_first_pass(fake):
    questions = ["What is 2 + 3?"]
    prompts = [fake.apply_chat_template((("user", q),)) for q in questions]
    kw = dict(step_tokens=16, max_steps=2, seed=11)
    (pf,) = particle_filter(fake, KeywordScorer("5"), questions, prompts, 3, **kw)
    calls_before = fake.usage.calls
    (pg,) = particle_filter(fake, KeywordScorer("5"), questions, prompts, 3, iterations=2, **kw)
    assert pg.iterations == 2 and len(pg.particles) == 3
    # the first pass is the plain filter with the same seed; its drawn reference survives into the last pass
    assert pg.particles[-1].text in {p.text for p in pf.particles}
    assert pg.policy_tokens > pf.policy_tokens and fake.usage.calls - calls_before == pg.steps > pf.steps
    # the reference's forks and resamplings happen before each step, never after the last one
    (again,) = particle_filter(fake, KeywordScorer("5"), questions, prompts, 3, iterations=2, **kw)
    assert [p.text for p in again.particles] == [p.text for p in pg.particles]


def test_one_particle_is_a_single_sample(fake):
    q = "Name a colour."
    prompts = [fake.apply_chat_template((("user", q),))]
    (r,) = particle_filter(fake, KeywordScorer("x"), [q], prompts, 1, step_tokens=16, max_steps=2, seed=3)
    assert len(r.particles) == 1 and r.selected == 0


def test_puri_et_al_particle_filter_never_resamples_after_the_last_step(fake):
    # the paper's kernel (particle_gibbs_batch.py) resamples BEFORE each new step, so the final argmax sees the last
    # step's pool; resampling once more after it (its_hub's order) can drop the best particle before selection
    q = "Count to five."
    prompts = [fake.apply_chat_template((("user", q),))]
    kw = dict(step_tokens=4, max_steps=2)
    lost = 0
    for seed in range(10):
        (paper,) = particle_filter(fake, HashScorer(), [q], prompts, 4, seed=seed, **kw)
        (its,) = particle_filter(fake, HashScorer(), [q], prompts, 4, seed=seed, resample_after_last=True, **kw)
        best = max(p.reward for p in paper.particles)
        assert paper.particles[paper.selected].reward == best  # the best particle of the last step is selected
        # the same steps were generated; its_hub only adds a resampling: its pool is drawn from the paper's
        assert {p.text for p in its.particles} <= {p.text for p in paper.particles}
        lost += its.particles[its.selected].reward < best
    assert lost >= 1  # in some of the scripted runs the extra resampling lost the best particle


def test_particle_filter_randomness_depends_on_the_problem_key_not_the_batch(fake):
    questions = ["What is 2 + 3?", "Name a colour."]
    prompts = [fake.apply_chat_template((("user", q),)) for q in questions]
    kw = dict(step_tokens=8, max_steps=2, seed=5)
    both = particle_filter(fake, HashScorer(), questions, prompts, 3, keys=["p/0", "p/1"], **kw)
    (second,) = particle_filter(fake, HashScorer(), questions[1:], prompts[1:], 3, keys=["p/1"], **kw)
    assert [p.text for p in second.particles] == [p.text for p in both[1].particles]
    assert second.steps == both[1].steps and second.selected == both[1].selected
