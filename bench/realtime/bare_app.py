"""The reference: a bare Starlette app serving the same model the plain way a user would write it.

``MODEL_PATH=/path/model.joblib uvicorn bare_app:app`` loads the joblib model once and answers
``POST /invocations`` (a JSON list of rows) with the predictions as a JSON list. Nothing is tuned:
the body goes through ``Request.json()``, ``np.asarray`` and ``model.predict``, and back through
``JSONResponse``. ``GET /ping`` answers 200, as a model server's health check.
"""

from __future__ import annotations

import os

import joblib
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

model = joblib.load(os.environ["MODEL_PATH"])


async def ping(request: Request) -> Response:
    return Response(status_code=200)


async def invocations(request: Request) -> JSONResponse:
    rows = np.asarray(await request.json())
    return JSONResponse(model.predict(rows).tolist())


app = Starlette(
    routes=[
        Route("/ping", ping, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
    ]
)
