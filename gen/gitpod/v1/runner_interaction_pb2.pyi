import datetime

from gitpod.v1 import runner_configuration_pb2 as _runner_configuration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FieldValue(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class EnvironmentClass(_message.Message):
    __slots__ = ("id", "runner_id", "display_name", "description", "configuration", "enabled")
    ID_FIELD_NUMBER: _ClassVar[int]
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    id: str
    runner_id: str
    display_name: str
    description: str
    configuration: _containers.RepeatedCompositeFieldContainer[FieldValue]
    enabled: bool
    def __init__(self, id: _Optional[str] = ..., runner_id: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., configuration: _Optional[_Iterable[_Union[FieldValue, _Mapping]]] = ..., enabled: bool = ...) -> None: ...

class SignupRequest(_message.Message):
    __slots__ = ("public_key", "environment_classes")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_CLASSES_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    environment_classes: _containers.RepeatedCompositeFieldContainer[EnvironmentClass]
    def __init__(self, public_key: _Optional[bytes] = ..., environment_classes: _Optional[_Iterable[_Union[EnvironmentClass, _Mapping]]] = ...) -> None: ...

class SignupResponse(_message.Message):
    __slots__ = ("runner_id",)
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    runner_id: str
    def __init__(self, runner_id: _Optional[str] = ...) -> None: ...

class RunnerInteractionServiceGetHostAuthenticationTokenValueRequest(_message.Message):
    __slots__ = ("runner_id", "principal_id", "host")
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    runner_id: str
    principal_id: str
    host: str
    def __init__(self, runner_id: _Optional[str] = ..., principal_id: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class RunnerInteractionServiceGetHostAuthenticationTokenValueResponse(_message.Message):
    __slots__ = ("token_id", "value", "refresh_token", "expires_at", "source")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    value: bytes
    refresh_token: bytes
    expires_at: _timestamp_pb2.Timestamp
    source: _runner_configuration_pb2.HostAuthenticationTokenSource
    def __init__(self, token_id: _Optional[str] = ..., value: _Optional[bytes] = ..., refresh_token: _Optional[bytes] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[_Union[_runner_configuration_pb2.HostAuthenticationTokenSource, str]] = ...) -> None: ...
