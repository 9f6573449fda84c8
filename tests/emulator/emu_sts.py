"""STS: GetCallerIdentity, AssumeRole, AssumeRoleWithWebIdentity (query
protocol, XML replies as STS writes them)."""
import re
import time
import uuid
from xml.sax.saxutils import escape

NS = "https://sts.amazonaws.com/doc/2011-06-15/"
ROLE_RE = re.compile(r"arn:aws:iam::([0-9]{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})")
SESSION_RE = re.compile(r"[\w+=,.@-]{2,64}")


class StsError(Exception):
    def __init__(self, code, message, status=400, sender=True):
        super().__init__(message)
        self.code, self.message, self.status, self.sender = code, message, status, sender


def error_xml(code, message, sender=True):
    return (f'<ErrorResponse xmlns="{NS}">\n  <Error>\n'
            f'    <Type>{"Sender" if sender else "Receiver"}</Type>\n'
            f'    <Code>{escape(code)}</Code>\n    <Message>{escape(message)}</Message>\n'
            f'  </Error>\n  <RequestId>{uuid.uuid4()}</RequestId>\n</ErrorResponse>\n')


def _wrap(action, body):
    return (f'<{action}Response xmlns="{NS}">\n  <{action}Result>\n{body}  </{action}Result>\n'
            f'  <ResponseMetadata>\n    <RequestId>{uuid.uuid4()}</RequestId>\n'
            f'  </ResponseMetadata>\n</{action}Response>\n')


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Sts:
    def __init__(self, accounts, cfg):
        self.accounts = accounts
        self.cfg = cfg

    def handle(self, action, params, ident):
        fn = {"GetCallerIdentity": self.get_caller_identity, "AssumeRole": self.assume_role,
              "AssumeRoleWithWebIdentity": self.assume_role_web}.get(action)
        if fn is None:
            raise StsError("InvalidAction", f"Could not find operation {action} for version "
                           f"{params.get('Version', 'NO_VERSION_SPECIFIED')}")
        return fn(params, ident)

    def get_caller_identity(self, params, ident):
        return _wrap("GetCallerIdentity",
                     f"    <Arn>{escape(ident['arn'])}</Arn>\n"
                     f"    <UserId>{escape(ident['user_id'])}</UserId>\n"
                     f"    <Account>{ident['account']}</Account>\n")

    def _early(self):
        return int(self.cfg.get("sts_expire_early") or 0)

    def _duration(self, params):
        if self.cfg.get("sts_duration"):
            return int(self.cfg["sts_duration"])
        d = int(params.get("DurationSeconds", 3600))
        if not 900 <= d <= 43200:
            raise StsError("ValidationError", f"1 validation error detected: Value '{d}' at "
                           "'durationSeconds' failed to satisfy constraint: Member must have "
                           "value greater than or equal to 900")
        return d

    def _role(self, params, who, action):
        arn = params.get("RoleArn", "")
        session = params.get("RoleSessionName", "")
        m = ROLE_RE.fullmatch(arn)
        if not SESSION_RE.fullmatch(session):
            raise StsError("ValidationError", "1 validation error detected: Value "
                           f"'{session}' at 'roleSessionName' failed to satisfy constraint: "
                           "Member must satisfy regular expression pattern: [\\w+=,.@-]*")
        if not m or m.group(1) not in self.accounts.known:
            raise StsError("AccessDenied", f"User: {who} is not authorized to perform: "
                           f"{action} on resource: {arn}", status=403)
        return m.group(1), m.group(2), session

    def _creds_xml(self, akid, ident):
        return (f"    <AssumedRoleUser>\n      <AssumedRoleId>{escape(ident['user_id'])}"
                f"</AssumedRoleId>\n      <Arn>{escape(ident['arn'])}</Arn>\n"
                f"    </AssumedRoleUser>\n    <Credentials>\n"
                f"      <AccessKeyId>{akid}</AccessKeyId>\n"
                f"      <SecretAccessKey>{escape(ident['secret'])}</SecretAccessKey>\n"
                f"      <SessionToken>{escape(ident['token'])}</SessionToken>\n"
                f"      <Expiration>{_iso(ident.get('announced', ident['expires']))}</Expiration>\n"
                f"    </Credentials>\n")

    def assume_role(self, params, ident):
        acct, role, session = self._role(params, ident["arn"], "sts:AssumeRole")
        akid, new = self.accounts.new_session(acct, role, session, self._duration(params),
                                              self._early())
        return _wrap("AssumeRole", self._creds_xml(akid, new) +
                     "    <PackedPolicySize>0</PackedPolicySize>\n")

    def assume_role_web(self, params, ident):
        token = params.get("WebIdentityToken", "")
        if len(token) < 4:
            raise StsError("InvalidIdentityToken", "Couldn't retrieve verification key from "
                           "your identity provider,  please reference AssumeRoleWithWebIdentity "
                           "documentation for requirements")
        acct, role, session = self._role(params, "arn:aws:sts::anonymous",
                                         "sts:AssumeRoleWithWebIdentity")
        akid, new = self.accounts.new_session(acct, role, session, self._duration(params),
                                              self._early())
        return _wrap("AssumeRoleWithWebIdentity",
                     "    <SubjectFromWebIdentityToken>emu-subject</SubjectFromWebIdentityToken>\n"
                     "    <Audience>sts.amazonaws.com</Audience>\n"
                     + self._creds_xml(akid, new) +
                     "    <Provider>emu.oidc.local</Provider>\n")
