"""Accounts of a self-hosted studio (DESIGN 3.9): passwords, sessions, roles granted by an admin.

Passwords are stored as salted scrypt hashes (hashlib; n=2**14, r=8, p=1, 16-byte salt);
a sign-in makes a session: a random token the browser keeps (it survives a reload and a
restart), stored here only as its SHA-256. Every request resolves the token to the user's
*current* role, so an admin's grant or revoke counts from the next request. Nobody chooses
a role at sign-in; the first admin is made on the command line:

    python -m studio_backend.accounts --home DIR create-admin NAME      # asks for the password
    python -m studio_backend.accounts --home DIR add NAME --role annotator
    python -m studio_backend.accounts --home DIR grant NAME admin
    python -m studio_backend.accounts --home DIR list

(`--password-stdin` reads the password from standard input instead of asking.)
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import os
import re
import secrets
import sys
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select, text

from .db import Database
from .models import Session as SessionRow
from .models import User
from .services import ROLES, PermissionDenied, ServiceError, UserRecord, require

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8
SESSION_DAYS = 14
NAME_RE = re.compile(r"^[A-Za-z0-9][\w.\-@]{0,63}$")
MAX_FAILED_SIGN_INS = 5  # wrong passwords for one account name within FAILED_WINDOW_S ...
FAILED_WINDOW_S = 60.0  # ... after which its sign-in is refused until the oldest of them is this old


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    try:
        algo, n, r, p, salt, key = (stored or "").split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(key) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), key)


_DUMMY = hash_password(secrets.token_hex(8))  # compared against when the name is unknown: same time

# Every API request reads its account through this statement: written once as SQL text (portable named
# parameters, typed result columns), it costs ~0.1 ms against ~0.5 ms for building the same select each time.
_USER_FOR = text("SELECT users.id, users.name, users.role, sessions.expires_at FROM users "
                 "JOIN sessions ON sessions.user_id = users.id WHERE sessions.token_hash = :token_hash"
                 ).columns(User.__table__.c.id, User.__table__.c.name, User.__table__.c.role,
                           SessionRow.__table__.c.expires_at)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # SQLite gives naive datetimes back


class WrongPassword(ServiceError):
    """A wrong name or password (one message for both)."""


class TooManyWrong(ServiceError):
    """A name whose sign-in is paused after too many wrong passwords."""


class AccountService:
    def __init__(self, db: Database):
        self.db = db
        # failed sign-ins per account name (lower-cased), in this process: guessing passwords is slowed to
        # MAX_FAILED_SIGN_INS per FAILED_WINDOW_S per name (a guesser cannot try 40 passwords in two seconds)
        self._failures: dict[str, deque] = {}
        self._failures_lock = threading.Lock()
        self.clock = time.monotonic

    @staticmethod
    def check_name(name: str) -> str:
        name = (name or "").strip()
        if not NAME_RE.match(name):
            raise ServiceError(f"account name {name!r}: 1-64 letters, digits, . - _ @, starting with a letter or digit")
        return name

    @staticmethod
    def check_password(password: str) -> str:
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise ServiceError(f"a password needs at least {MIN_PASSWORD} characters")
        if len(password) > 1024 or any(ord(c) < 32 for c in password):
            raise ServiceError("a password may not hold control characters or be longer than 1,024 characters")
        return password

    def _create(self, name: str, password: str, role: str) -> UserRecord:
        name, password = self.check_name(name), self.check_password(password)
        if role not in ROLES:
            raise ServiceError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        with self.db.session() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is not None and u.password_hash:
                raise ServiceError(f"the account {name!r} exists already")
            twin = s.scalar(select(User.name).where(func.lower(User.name) == name.lower(), User.name != name,
                                                    User.password_hash.is_not(None)))
            if twin is not None:  # 'Admin' beside 'admin' would pass for it in a list or a log
                raise ServiceError(f"the account {twin!r} exists already: names that differ only in case are "
                                   f"one name; choose another for {name!r}")
            if u is None:
                u = User(name=name, role=role)
                s.add(u)
            u.role, u.password_hash = role, hash_password(password)
            s.flush()
            return UserRecord(u.id, u.name, u.role)

    def create(self, admin: UserRecord, name: str, password: str, role: str = "creator") -> UserRecord:
        """An admin makes an account with its role."""
        self._require_admin(admin)
        return self._create(name, password, role)

    def create_admin(self, name: str, password: str) -> UserRecord:
        """The command line's way in: the host makes an admin account (no admin needed)."""
        return self._create(name, password, "admin")

    def _require_admin(self, actor: UserRecord) -> None:
        require(actor, "admin")
        with self.db.session(write=False) as s:  # the actor's role now, not when the record was made
            u = s.get(User, actor.id)
            if u is None or u.role != "admin":
                raise PermissionDenied(f"{actor.name} is no longer an admin")

    def sign_in(self, name: str, password: str) -> tuple[UserRecord, str]:
        """(user, session token) for a right name and password; ServiceError otherwise (same words either way)."""
        u = self._verify(name, password)
        token = secrets.token_urlsafe(32)
        with self.db.session() as s:
            s.add(SessionRow(token_hash=_token_hash(token), user_id=u.id, created_at=_now(),
                             expires_at=_now() + timedelta(days=SESSION_DAYS)))
        return u, token

    def _verify(self, name: str, password: str) -> UserRecord:
        """The account for a right name and password. WrongPassword otherwise (the same words for an unknown name),
        TooManyWrong while the name has had MAX_FAILED_SIGN_INS wrong ones within FAILED_WINDOW_S."""
        name = (name or "").strip()
        key = name.lower()
        with self._failures_lock:
            now, fails = self.clock(), self._failures.get(key)
            while fails and now - fails[0] > FAILED_WINDOW_S:
                fails.popleft()
            if fails is not None and len(fails) >= MAX_FAILED_SIGN_INS:
                wait = int(FAILED_WINDOW_S - (now - fails[0])) + 1
                raise TooManyWrong(f"too many wrong passwords for this name: try again in {wait} s")
        with self.db.session(write=False) as s:
            u = s.scalar(select(User).where(User.name == name)) if NAME_RE.match(name) else None
            stored = u.password_hash if u is not None else None
        if not verify_password(password or "", stored or _DUMMY) or not stored:
            with self._failures_lock:
                self._failures.setdefault(key, deque()).append(self.clock())
                if len(self._failures) > 10_000:  # a flood of made-up names does not grow this without end
                    self._failures = {k: v for k, v in self._failures.items() if v and self.clock() - v[-1] <= FAILED_WINDOW_S}
            raise WrongPassword("wrong name or password")
        with self._failures_lock:
            self._failures.pop(key, None)
        return UserRecord(u.id, u.name, u.role)

    def user_for(self, token: str | None) -> UserRecord | None:
        """The signed-in user of a session token with the role they have now, or None (unknown, expired)."""
        if not token or not isinstance(token, str) or len(token) > 128:
            return None
        with self.db.transaction(write=False) as c:
            row = c.execute(_USER_FOR, {"token_hash": _token_hash(token)}).first()
        if row is None or _aware(row.expires_at) < _now():
            return None
        return UserRecord(row.id, row.name, row.role)

    def sign_out(self, token: str | None) -> None:
        if token:
            with self.db.session() as s:
                s.execute(delete(SessionRow).where(SessionRow.token_hash == _token_hash(token)))

    def grant(self, admin: UserRecord, name: str, role: str) -> UserRecord:
        """Give an account a role (creator, annotator, admin); counts from its next request."""
        self._require_admin(admin)
        return self._set_role(name, role)

    def _set_role(self, name: str, role: str) -> UserRecord:
        if role not in ROLES:
            raise ServiceError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        with self.db.session() as s:
            u = s.scalar(select(User).where(User.name == (name or "").strip()))
            if u is None:
                raise ServiceError(f"no account {name!r}")
            u.role = role
            return UserRecord(u.id, u.name, u.role)

    def set_password(self, actor: UserRecord, name: str, password: str, current: str | None = None) -> None:
        """An admin resets anyone else's password; a person changes their own with their current password (a
        session token alone, taken from a shared computer, cannot lock its owner out); every session of the account
        ends."""
        if actor.name != name:
            self._require_admin(actor)
        else:
            self._check_current(name, current)
        self._write_password(name, password)

    def _check_current(self, name: str, current: str | None) -> None:
        """The account's current password, checked as a sign-in is (wrong guesses count toward the name's limit)."""
        try:
            self._verify(name, current or "")
        except WrongPassword as e:
            raise ServiceError("your current password is not right: give it to change your own password") from e

    def _write_password(self, name: str, password: str) -> None:
        """The host's way (the command line's passwd) and the end of set_password: no actor to check."""
        self.check_password(password)
        with self.db.session() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is None:
                raise ServiceError(f"no account {name!r}")
            u.password_hash = hash_password(password)
            s.execute(delete(SessionRow).where(SessionRow.user_id == u.id))

    def list(self, admin: UserRecord) -> list[dict]:
        self._require_admin(admin)
        with self.db.session(write=False) as s:
            return [{"name": u.name, "role": u.role, "password": bool(u.password_hash)}
                    for u in s.scalars(select(User).order_by(User.name))]

    def any_admin(self) -> bool:
        with self.db.session(write=False) as s:
            return s.scalar(select(User.id).where(User.role == "admin", User.password_hash.is_not(None)).limit(1)) \
                is not None


def _read_password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("the two passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    from .studio import Studio

    ap = argparse.ArgumentParser(prog="python -m studio_backend.accounts", description="Studio accounts.")
    ap.add_argument("--home", default=os.environ.get("OMNI_HOME", "studio_data"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("create-admin", "add", "passwd"):
        p = sub.add_parser(cmd)
        p.add_argument("name")
        p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        if cmd == "add":
            p.add_argument("--role", default="creator", choices=ROLES)
    g = sub.add_parser("grant")
    g.add_argument("name")
    g.add_argument("role", choices=ROLES)
    sub.add_parser("list")
    args = ap.parse_args(argv)
    studio = Studio.open(args.home)
    acc = studio.accounts
    try:
        if args.cmd in ("create-admin", "add"):
            u = acc._create(args.name, _read_password(args), "admin" if args.cmd == "create-admin" else args.role)
            print(f"account {u.name} ({u.role}) created")
        elif args.cmd == "passwd":
            with studio.db.session(write=False) as s:
                u = s.scalar(select(User).where(User.name == args.name))
            if u is None:
                raise ServiceError(f"no account {args.name!r}")
            acc._write_password(args.name, _read_password(args))  # the host, at the server's shell
            print(f"password of {args.name} changed; its sessions ended")
        elif args.cmd == "grant":
            u = acc._set_role(args.name, args.role)
            print(f"{u.name} is now {u.role}")
        else:
            with studio.db.session(write=False) as s:
                for u in s.scalars(select(User).order_by(User.name)):
                    print(f"{u.name}\t{u.role}\t{'password' if u.password_hash else 'no password (cannot sign in)'}")
    except ServiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
