"""Routes for the pure maths: PAMA weights and CGPO judges (filled in below)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import AUTH

router = APIRouter(dependencies=AUTH)
