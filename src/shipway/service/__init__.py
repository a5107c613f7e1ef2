"""The service layer: the operations every API exposes, their validation and rules.

Services write desired state to the store and wake the controller; adapters (REST, SageMaker
wire, CLI) call them with the same shapes and translate their errors.
"""

from __future__ import annotations

from shipway.service.endpoint_configs import EndpointConfigService
from shipway.service.endpoints import EndpointService
from shipway.service.models import ModelService

__all__ = ["EndpointConfigService", "EndpointService", "ModelService"]
