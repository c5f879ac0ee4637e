"""Validation of every value that may reach git, ssh or a remote shell: ids, SHAs, refs, URLs.

Each check runs before the value is used anywhere; option-like values (a leading '-') are refused
so that no argument can be read as a flag by git, docker or ssh.
"""

from __future__ import annotations

import re

SERVICE_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
TARGET_ID_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$")
SHORT_SHA_RE = re.compile(r"^[0-9a-fA-F]{4,40}$")
FULL_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# git check-ref-format, restricted to what deploy refs need.
REPO_SCHEMES = ("http://", "https://", "ssh://", "git://", "file://")
# scp-like ssh: user@host:path
SCP_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.][A-Za-z0-9.-]*:[A-Za-z0-9._/~-]+$")  # host not option-like
# Docker image reference (name[:tag][@digest]); conservative.
IMAGE_RE = re.compile(r"^[a-z0-9]([a-z0-9._/-]*[a-z0-9])?(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$")
# Whitespace, control characters and shell metacharacters never belong in a repository URL.
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f`$;|&<>\\\"']")
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def is_service_id(value: object) -> bool:
    """DNS-label-like: lowercase letters, digits and '-', 1..63 chars, no leading/trailing '-'."""
    return isinstance(value, str) and bool(SERVICE_ID_RE.fullmatch(value))


def is_target_id(value: object) -> bool:
    return isinstance(value, str) and bool(TARGET_ID_RE.fullmatch(value))


def is_commit_id(value: object) -> bool:
    """4..40 hex characters: git's own minimum abbreviation up to a full SHA-1."""
    return isinstance(value, str) and bool(SHORT_SHA_RE.fullmatch(value))


def is_full_sha(value: object) -> bool:
    return isinstance(value, str) and bool(FULL_SHA_RE.fullmatch(value))


def is_repo_url(value: object) -> bool:
    """http(s)/ssh/git/file URL (or scp-like ssh), no whitespace or control chars, no leading '-'.

    Credentials never belong in a repository URL: it is copied into plans, job records, image
    labels and runtime env. Only ssh may name a user (`ssh://git@host/...`), never a password.
    """
    if not isinstance(value, str) or not value or value.startswith("-"):
        return False
    if _URL_FORBIDDEN.search(value):
        return False
    if value.startswith(REPO_SCHEMES):
        scheme, rest = value.split("://", 1)
        if not rest or rest.startswith("-"):
            return False
        netloc = rest.split("/", 1)[0]
        if netloc.rsplit("@", 1)[-1].startswith("-"):  # ssh would read `-oProxyCommand=...` as an option
            return False
        if "@" in netloc:
            userinfo = netloc.rsplit("@", 1)[0]
            return scheme == "ssh" and ":" not in userinfo and bool(userinfo)
        return True
    return bool(SCP_RE.fullmatch(value))


def is_image_ref(value: object) -> bool:
    return isinstance(value, str) and bool(IMAGE_RE.fullmatch(value))


def is_plain_name(value: object) -> bool:
    """Compose project/service names, build-arg names and similar single tokens."""
    return isinstance(value, str) and bool(NAME_RE.fullmatch(value))


def is_safe_path(value: object) -> bool:
    """A path that may be passed as an argument: no NUL/newline, not option-like."""
    return (
        isinstance(value, str)
        and bool(value)
        and not value.startswith("-")
        and "\x00" not in value
        and "\n" not in value
        and "\r" not in value
    )


def is_relative_repo_path(value: object) -> bool:
    """A path inside a repository checkout: relative, no '..' components."""
    return is_safe_path(value) and not str(value).startswith("/") and ".." not in str(value).split("/")


def normalize_image(image: str) -> str:
    """Docker's normalization of an image reference, which is also the name `ctr images import`
    gives a `docker save`d image: `postgres:16` -> docker.io/library/postgres:16,
    `org/name:tag` -> docker.io/org/name:tag; a registry host (with '.', ':' or localhost) stays."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


def same_image(a: str | None, b: str | None) -> bool:
    """Two references name the same image once normalized (`x:1` is `docker.io/library/x:1`)."""
    return isinstance(a, str) and isinstance(b, str) and bool(a and b) and normalize_image(a) == normalize_image(b)
