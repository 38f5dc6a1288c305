from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Principal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRINCIPAL_UNSPECIFIED: _ClassVar[Principal]
    PRINCIPAL_ACCOUNT: _ClassVar[Principal]
    PRINCIPAL_USER: _ClassVar[Principal]
    PRINCIPAL_RUNNER: _ClassVar[Principal]
    PRINCIPAL_ENVIRONMENT: _ClassVar[Principal]
    PRINCIPAL_SERVICE_ACCOUNT: _ClassVar[Principal]
    PRINCIPAL_RUNNER_MANAGER: _ClassVar[Principal]
PRINCIPAL_UNSPECIFIED: Principal
PRINCIPAL_ACCOUNT: Principal
PRINCIPAL_USER: Principal
PRINCIPAL_RUNNER: Principal
PRINCIPAL_ENVIRONMENT: Principal
PRINCIPAL_SERVICE_ACCOUNT: Principal
PRINCIPAL_RUNNER_MANAGER: Principal

class Subject(_message.Message):
    __slots__ = ("id", "principal")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    principal: Principal
    def __init__(self, id: _Optional[str] = ..., principal: _Optional[_Union[Principal, str]] = ...) -> None: ...
