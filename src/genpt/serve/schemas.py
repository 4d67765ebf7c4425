"""The request bodies, as pydantic models: a wrong type or a missing field is a 422 that names the field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A text, or the two texts of a pair task (premise and hypothesis, or two sentences to compare).
    inputs: list[str | list[str]] = Field(min_length=1)
    truncate: bool = Field(False, description="cut inputs longer than the model reads instead of refusing them")


class ChooseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    context: str
    candidates: list[str] = Field(min_length=2)
    truncate: bool = False


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[str] = Field(min_length=1)
    truncate: bool = Field(False, description="keep the first tokens of a longer text instead of refusing it")


class CompletionRequest(BaseModel):
    """OpenAI's text completion request; fields genpt has no use for (`user`) are ignored, as OpenAI-compatible
    servers do, and options it cannot honour are refused unless left at their neutral value."""

    model_config = ConfigDict(extra="ignore")
    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stream: bool = False
    stop: str | list[str] | None = Field(None, validate_default=True)  # a list after validation
    logprobs: int | None = Field(None, ge=0, le=5)
    seed: int | None = None
    echo: bool = False
    best_of: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    suffix: str | None = None
    truncate: bool = Field(False, description="genpt: keep the last tokens of a longer prompt instead of refusing it")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("at most 4 stop sequences, none empty")
        return stops

    @field_validator("echo", "suffix", "logit_bias", "best_of", "presence_penalty", "frequency_penalty")
    @classmethod
    def _neutral(cls, value, info):
        if value not in (None, False, 0, 0.0, {}) and not (info.field_name == "best_of" and value == 1):
            raise ValueError(f"genpt does not implement {info.field_name}; leave it out")
        return value
