"""Turning runtime facts into an Observation (live state + evidence), shared by every executor."""

from __future__ import annotations

import logging

from executors.health import HealthReading
from executors.provenance import Identity
from executors.stamp import ENV_COMMIT, LABEL_COMMIT, Layer, commit_of, derive_state
from unidesk_tui.documents import LiveState
from unidesk_tui.reconcile import Observation

log = logging.getLogger(__name__)


def health_layer(reading: HealthReading, expected: bool) -> Layer:
    note = reading.health if reading.health != "healthy" else "no deploy.commit in body"
    return Layer("health", reading.commit, expected=expected, note=note)


def docker_layers(image_labels: dict, env: dict, reading: HealthReading, health_expected: bool) -> list[Layer]:
    """Image label, container env and health, in that order."""
    return [
        Layer("image label", commit_of(image_labels.get(LABEL_COMMIT)), note="image not stamped"),
        Layer("env", commit_of(env.get(ENV_COMMIT)), note="no UNIDESK_DEPLOY_COMMIT"),
        health_layer(reading, health_expected),
    ]


def observed(layers: list[Layer], desired: str | None, reading: HealthReading, evidence: dict, image_present: bool | None) -> Observation:
    derived = derive_state(layers, desired)
    evidence = {**evidence, "health": reading.as_evidence(), "layers": {layer.name: layer.commit for layer in layers}}
    return Observation(LiveState(commit=derived.commit, state=derived.state, health=reading.health, message=derived.message, evidence=evidence), image_present)


def missing(message: str, reading: HealthReading | None, evidence: dict, image_present: bool | None) -> Observation:
    health = reading.health if reading else "unknown"
    if reading is not None:
        evidence = {**evidence, "health": reading.as_evidence()}
    return Observation(LiveState(commit=None, state="missing", health=health, message=message, evidence=evidence), image_present)


def failed(state: str, message: str) -> Observation:
    """`unreachable` or `error` for a service whose target or probe failed."""
    return Observation(LiveState(commit=None, state=state, health="unknown", message=message), None)


def with_identity(obs: Observation, identity: Identity) -> Observation:
    """Add the image identity (executors/provenance.py) to an observation: a running image that is
    not the one the reconciler built for the commit it claims is `provenance-mismatch`, whatever
    its labels and env say; an unrecorded one (built before records existed) is only reported."""
    live = obs.live
    update: dict = {"evidence": {**live.evidence, "identity": identity.evidence()}}
    if identity.status == "mismatch":
        update |= {"state": "provenance-mismatch", "message": identity.message}
    elif identity.status == "unrecorded" and live.state == "in-sync":
        update["message"] = f"{live.message}; {identity.message}"
    return Observation(live.model_copy(update=update), obs.imagePresent)
