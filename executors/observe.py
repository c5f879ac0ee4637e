"""Turning runtime facts into an Observation (live state + evidence), shared by every executor.

Every layer a runtime has (image label, container env or Deployment annotation, health body) must
prove the same full SHA; `derive_state` turns what the layers show into the live state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from executors.health import HealthReading
from executors.provenance import Identity
from executors.stamp import ENV_COMMIT, LABEL_COMMIT, commit_of
from unidesk_tui.model import Health, LiveState, Observation, State


@dataclass(frozen=True)
class Evidence:
    """One layer's evidence: its name, whether the runtime should have it, the commit it shows."""

    name: str
    commit: str | None
    expected: bool = True
    note: str = ""


@dataclass(frozen=True)
class Derived:
    state: State
    commit: str | None
    message: str


def derive_state(layers: Iterable[Evidence], desired: str | None) -> Derived:
    """The live state of a running service from its layers.

    - layers that show different commits: `provenance-mismatch`;
    - all showing one commit other than `desired`: `drift`;
    - all showing `desired` but an expected layer proves nothing: `provenance-mismatch`
      (noop needs every layer the runtime has);
    - no layer proves any commit: `drift` with commit None.
    """
    layers = list(layers)
    shown = {layer.name: layer.commit for layer in layers if layer.commit}
    distinct = sorted(set(shown.values()))
    if len(distinct) > 1:
        parts = ", ".join(f"{name} {commit[:12]}" for name, commit in shown.items())
        return Derived(State.PROVENANCE_MISMATCH, None, f"layers disagree: {parts}")
    if not distinct:
        return Derived(
            State.DRIFT, None, "runtime proves no commit (no unidesk.ai labels, deploy env or health deploy.commit)"
        )
    commit = distinct[0]
    if desired and commit != desired:
        return Derived(State.DRIFT, commit, f"running {commit[:12]}")
    silent = [layer for layer in layers if layer.expected and not layer.commit]
    if silent:
        parts = ", ".join(f"{layer.name}{' (' + layer.note + ')' if layer.note else ''}" for layer in silent)
        return Derived(
            State.PROVENANCE_MISMATCH, commit, f"{', '.join(shown)} show {commit[:12]} but {parts} prove nothing"
        )
    return Derived(State.IN_SYNC, commit, f"{', '.join(shown)} show {commit[:12]}")


def health_layer(reading: HealthReading, expected: bool) -> Evidence:
    note = reading.health if reading.health != Health.HEALTHY else "no deploy.commit in body"
    return Evidence("health", reading.commit, expected=expected, note=note)


def docker_layers(
    image_labels: dict[str, str], env: dict[str, str], reading: HealthReading, health_expected: bool
) -> list[Evidence]:
    """Image label, container env and health, in that order."""
    return [
        Evidence("image label", commit_of(image_labels.get(LABEL_COMMIT)), note="image not stamped"),
        Evidence("env", commit_of(env.get(ENV_COMMIT)), note="no UNIDESK_DEPLOY_COMMIT"),
        health_layer(reading, health_expected),
    ]


def observed(
    layers: list[Evidence],
    desired: str | None,
    reading: HealthReading,
    evidence: dict[str, Any],
    image_present: bool | None,
) -> Observation:
    derived = derive_state(layers, desired)
    evidence = {**evidence, "health": reading.as_evidence(), "layers": {layer.name: layer.commit for layer in layers}}
    live = LiveState(
        commit=derived.commit, state=derived.state, health=reading.health, message=derived.message, evidence=evidence
    )
    return Observation(live, image_present)


def missing(
    message: str, reading: HealthReading | None, evidence: dict[str, Any], image_present: bool | None
) -> Observation:
    health = reading.health if reading else Health.UNKNOWN
    if reading is not None:
        evidence = {**evidence, "health": reading.as_evidence()}
    return Observation(
        LiveState(commit=None, state=State.MISSING, health=health, message=message, evidence=evidence), image_present
    )


def with_identity(obs: Observation, identity: Identity) -> Observation:
    """Add the image identity (executors/provenance.py) to an observation: a running image that is
    not the one the reconciler built for the commit it claims is `provenance-mismatch`, whatever
    its labels and env say; an unrecorded one (built before records existed) is only reported."""
    live = obs.live
    update: dict[str, Any] = {"evidence": {**live.evidence, "identity": identity.evidence()}}
    if identity.status == "mismatch":
        update |= {"state": State.PROVENANCE_MISMATCH, "message": identity.message}
    elif identity.status == "unrecorded" and live.state == State.IN_SYNC:
        update["message"] = f"{live.message}; {identity.message}"
    return Observation(live.model_copy(update=update), obs.imagePresent)
