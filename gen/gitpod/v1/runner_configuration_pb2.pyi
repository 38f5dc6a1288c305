import datetime

from gitpod.v1 import identity_pb2 as _identity_pb2
from gitpod.v1 import pagination_pb2 as _pagination_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HostAuthenticationTokenSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOST_AUTHENTICATION_TOKEN_SOURCE_UNSPECIFIED: _ClassVar[HostAuthenticationTokenSource]
    HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH: _ClassVar[HostAuthenticationTokenSource]
    HOST_AUTHENTICATION_TOKEN_SOURCE_PAT: _ClassVar[HostAuthenticationTokenSource]
HOST_AUTHENTICATION_TOKEN_SOURCE_UNSPECIFIED: HostAuthenticationTokenSource
HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH: HostAuthenticationTokenSource
HOST_AUTHENTICATION_TOKEN_SOURCE_PAT: HostAuthenticationTokenSource

class HostAuthenticationToken(_message.Message):
    __slots__ = ("id", "runner_id", "user_id", "host", "source", "expires_at", "integration_id", "scopes", "subject")
    ID_FIELD_NUMBER: _ClassVar[int]
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    id: str
    runner_id: str
    user_id: str
    host: str
    source: HostAuthenticationTokenSource
    expires_at: _timestamp_pb2.Timestamp
    integration_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    subject: _identity_pb2.Subject
    def __init__(self, id: _Optional[str] = ..., runner_id: _Optional[str] = ..., user_id: _Optional[str] = ..., host: _Optional[str] = ..., source: _Optional[_Union[HostAuthenticationTokenSource, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., integration_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., subject: _Optional[_Union[_identity_pb2.Subject, _Mapping]] = ...) -> None: ...

class CreateHostAuthenticationTokenRequest(_message.Message):
    __slots__ = ("runner_id", "user_id", "host", "token", "source", "expires_at", "refresh_token", "integration_id", "scopes", "subject")
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    runner_id: str
    user_id: str
    host: str
    token: str
    source: HostAuthenticationTokenSource
    expires_at: _timestamp_pb2.Timestamp
    refresh_token: str
    integration_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    subject: _identity_pb2.Subject
    def __init__(self, runner_id: _Optional[str] = ..., user_id: _Optional[str] = ..., host: _Optional[str] = ..., token: _Optional[str] = ..., source: _Optional[_Union[HostAuthenticationTokenSource, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refresh_token: _Optional[str] = ..., integration_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., subject: _Optional[_Union[_identity_pb2.Subject, _Mapping]] = ...) -> None: ...

class CreateHostAuthenticationTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: HostAuthenticationToken
    def __init__(self, token: _Optional[_Union[HostAuthenticationToken, _Mapping]] = ...) -> None: ...

class GetHostAuthenticationTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetHostAuthenticationTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: HostAuthenticationToken
    def __init__(self, token: _Optional[_Union[HostAuthenticationToken, _Mapping]] = ...) -> None: ...

class ListHostAuthenticationTokensRequest(_message.Message):
    __slots__ = ("pagination", "filter")
    class Filter(_message.Message):
        __slots__ = ("runner_id", "user_id", "subject_id")
        RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
        USER_ID_FIELD_NUMBER: _ClassVar[int]
        SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
        runner_id: str
        user_id: str
        subject_id: str
        def __init__(self, runner_id: _Optional[str] = ..., user_id: _Optional[str] = ..., subject_id: _Optional[str] = ...) -> None: ...
    PAGINATION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    pagination: _pagination_pb2.PaginationRequest
    filter: ListHostAuthenticationTokensRequest.Filter
    def __init__(self, pagination: _Optional[_Union[_pagination_pb2.PaginationRequest, _Mapping]] = ..., filter: _Optional[_Union[ListHostAuthenticationTokensRequest.Filter, _Mapping]] = ...) -> None: ...

class ListHostAuthenticationTokensResponse(_message.Message):
    __slots__ = ("pagination", "tokens")
    PAGINATION_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    pagination: _pagination_pb2.PaginationResponse
    tokens: _containers.RepeatedCompositeFieldContainer[HostAuthenticationToken]
    def __init__(self, pagination: _Optional[_Union[_pagination_pb2.PaginationResponse, _Mapping]] = ..., tokens: _Optional[_Iterable[_Union[HostAuthenticationToken, _Mapping]]] = ...) -> None: ...

class UpdateHostAuthenticationTokenRequest(_message.Message):
    __slots__ = ("id", "token", "expires_at", "refresh_token", "scopes")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: str
    expires_at: _timestamp_pb2.Timestamp
    refresh_token: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refresh_token: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateHostAuthenticationTokenResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteHostAuthenticationTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteHostAuthenticationTokenResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHostAuthenticationTokenValueRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetHostAuthenticationTokenValueResponse(_message.Message):
    __slots__ = ("id", "token", "refresh_token", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: str
    refresh_token: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SCMIntegrationOAuthConfig(_message.Message):
    __slots__ = ("client_id", "encrypted_client_secret", "issuer_url")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    ISSUER_URL_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    encrypted_client_secret: bytes
    issuer_url: str
    def __init__(self, client_id: _Optional[str] = ..., encrypted_client_secret: _Optional[bytes] = ..., issuer_url: _Optional[str] = ...) -> None: ...

class SCMIntegration(_message.Message):
    __slots__ = ("id", "scm_id", "host", "oauth", "pat", "runner_id", "virtual_directory")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCM_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    OAUTH_FIELD_NUMBER: _ClassVar[int]
    PAT_FIELD_NUMBER: _ClassVar[int]
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    id: str
    scm_id: str
    host: str
    oauth: SCMIntegrationOAuthConfig
    pat: bool
    runner_id: str
    virtual_directory: str
    def __init__(self, id: _Optional[str] = ..., scm_id: _Optional[str] = ..., host: _Optional[str] = ..., oauth: _Optional[_Union[SCMIntegrationOAuthConfig, _Mapping]] = ..., pat: bool = ..., runner_id: _Optional[str] = ..., virtual_directory: _Optional[str] = ...) -> None: ...

class CreateSCMIntegrationRequest(_message.Message):
    __slots__ = ("runner_id", "scm_id", "host", "oauth_client_id", "oauth_plaintext_client_secret", "pat", "issuer_url", "virtual_directory")
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    SCM_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    OAUTH_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    OAUTH_PLAINTEXT_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    PAT_FIELD_NUMBER: _ClassVar[int]
    ISSUER_URL_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    runner_id: str
    scm_id: str
    host: str
    oauth_client_id: str
    oauth_plaintext_client_secret: str
    pat: bool
    issuer_url: str
    virtual_directory: str
    def __init__(self, runner_id: _Optional[str] = ..., scm_id: _Optional[str] = ..., host: _Optional[str] = ..., oauth_client_id: _Optional[str] = ..., oauth_plaintext_client_secret: _Optional[str] = ..., pat: bool = ..., issuer_url: _Optional[str] = ..., virtual_directory: _Optional[str] = ...) -> None: ...

class CreateSCMIntegrationResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetSCMIntegrationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetSCMIntegrationResponse(_message.Message):
    __slots__ = ("integration",)
    INTEGRATION_FIELD_NUMBER: _ClassVar[int]
    integration: SCMIntegration
    def __init__(self, integration: _Optional[_Union[SCMIntegration, _Mapping]] = ...) -> None: ...

class ListSCMIntegrationsRequest(_message.Message):
    __slots__ = ("pagination", "filter")
    class Filter(_message.Message):
        __slots__ = ("runner_ids",)
        RUNNER_IDS_FIELD_NUMBER: _ClassVar[int]
        runner_ids: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, runner_ids: _Optional[_Iterable[str]] = ...) -> None: ...
    PAGINATION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    pagination: _pagination_pb2.PaginationRequest
    filter: ListSCMIntegrationsRequest.Filter
    def __init__(self, pagination: _Optional[_Union[_pagination_pb2.PaginationRequest, _Mapping]] = ..., filter: _Optional[_Union[ListSCMIntegrationsRequest.Filter, _Mapping]] = ...) -> None: ...

class ListSCMIntegrationsResponse(_message.Message):
    __slots__ = ("pagination", "integrations")
    PAGINATION_FIELD_NUMBER: _ClassVar[int]
    INTEGRATIONS_FIELD_NUMBER: _ClassVar[int]
    pagination: _pagination_pb2.PaginationResponse
    integrations: _containers.RepeatedCompositeFieldContainer[SCMIntegration]
    def __init__(self, pagination: _Optional[_Union[_pagination_pb2.PaginationResponse, _Mapping]] = ..., integrations: _Optional[_Iterable[_Union[SCMIntegration, _Mapping]]] = ...) -> None: ...

class UpdateSCMIntegrationRequest(_message.Message):
    __slots__ = ("id", "oauth_client_id", "oauth_plaintext_client_secret", "pat", "issuer_url", "virtual_directory")
    ID_FIELD_NUMBER: _ClassVar[int]
    OAUTH_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    OAUTH_PLAINTEXT_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    PAT_FIELD_NUMBER: _ClassVar[int]
    ISSUER_URL_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    id: str
    oauth_client_id: str
    oauth_plaintext_client_secret: str
    pat: bool
    issuer_url: str
    virtual_directory: str
    def __init__(self, id: _Optional[str] = ..., oauth_client_id: _Optional[str] = ..., oauth_plaintext_client_secret: _Optional[str] = ..., pat: bool = ..., issuer_url: _Optional[str] = ..., virtual_directory: _Optional[str] = ...) -> None: ...

class UpdateSCMIntegrationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteSCMIntegrationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteSCMIntegrationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
