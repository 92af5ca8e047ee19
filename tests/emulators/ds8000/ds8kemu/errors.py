# SPDX-License-Identifier: MIT
"""What the emulated DS8000 answers when it refuses: CMUN messages, DSCLI
exit codes and REST statuses — every guess in one place.

Role
  DsError(key, **values) carries a message of TABLE; dscli prints
  "CMUNnnnnnE cmd: text" on stderr and exits with the kind's exit code;
  REST answers {"server": {"status": "failed", "code": ..., "message": ...}}
  with the kind's HTTP status.

From the reference (ds8000-zos-csm.md)
  Exit codes 0 ok, 2 syntax error, 3 connection error, 4 server error,
  5 authentication error, 6 application error.  CMUC00234I (lsflash found
  nothing), CMUC00168I (resyncflash).  The REST envelope and its
  server.status/code/message.  CMUC00137I (mkflash) is from a secondary
  source; CMUC00183I as the REST success code of a query is from IBM's
  pyds8k test data.

UNVERIFIED (no primary source; chosen here and nowhere else)
  Every CMUN message ID and text below, the CMUC IDs of rmflash,
  reverseflash and unfreezeflash, which refusal is an "application"
  (exit 6) and which a "server" (exit 4) error, and the HTTP statuses of
  REST refusals (401 auth, 404 an unknown object in the URL, 400 a refused
  request, 500 an internal failure).
"""

EXIT = {"ok": 0, "syntax": 2, "connect": 3, "server": 4, "auth": 5, "app": 6}
HTTP = {"syntax": 400, "auth": 401, "notfound": 404, "app": 400, "server": 500,
        "connect": 503}

# key: (message ID, kind, text with {placeholders})
TABLE = {
    "auth": ("CMUN00018E", "auth", "Authentication failed: the user name or password is not valid."),
    "token": ("CMUN00019E", "auth", "The session token is missing, unknown or expired. Log in again."),
    "connect": ("CMUN00020E", "connect", "Unable to connect to the management console server {hmc}: {why}"),
    "unknown_cmd": ("CMUN00010E", "syntax", "{word}: unknown command."),
    "bad_flag": ("CMUN00011E", "syntax", "{flag}: unknown or misplaced parameter."),
    "missing": ("CMUN00012E", "syntax", "{what} is required."),
    "bad_id": ("CMUN00013E", "syntax", "{id}: not a valid {what}."),
    "bad_dev": ("CMUN00014E", "syntax", "{dev}: this HMC manages storage image {image} only."),
    "no_volume": ("CMUN03001E", "app", "{id}: the volume does not exist."),
    "too_many": ("CMUN03002E", "app",
                 "{id}: source volume {src} would have {n} FlashCopy targets; the maximum is {max}."),
    "two_incremental": ("CMUN03003E", "app",
                        "{id}: source volume {src} already has an incremental (-record) relationship {other}; only one is allowed."),
    "exists": ("CMUN03004E", "app", "{id}: the FlashCopy relationship already exists."),
    "no_relationship": ("CMUN03005E", "app", "{id}: no such FlashCopy relationship."),
    "busy_target": ("CMUN03006E", "app", "{id}: volume {vol} is already the target of FlashCopy relationship {other}."),
    "mismatch": ("CMUN03007E", "app", "{id}: {why}."),
    "same_volume": ("CMUN03008E", "app", "{id}: the source and the target are the same volume."),
    "not_incremental": ("CMUN03009E", "app",
                        "{id}: the relationship was not established with -record and -persist; it cannot be resynchronized."),
    "reverse": ("CMUN03010E", "app", "{id}: the relationship cannot be reversed: {why}."),
    "target_of_self": ("CMUN03011E", "app", "{id}: volume {vol} is the target of a relationship in the same request."),
    "internal": ("CMUN03099E", "server", "{id}: the storage image could not complete the request: {why}"),
}

OK = {
    "mkflash": "CMUC00137I mkflash: FlashCopy pair {id} successfully created.",
    "rmflash": "CMUC00140I rmflash: FlashCopy pair {id} successfully removed.",       # UNVERIFIED ID
    "resyncflash": "CMUC00168I resyncflash: FlashCopy volume pair {id} successfully resynchronized.",
    "reverseflash": "CMUC00169I reverseflash: FlashCopy volume pair {id} successfully reversed.",  # UNVERIFIED ID
    "unfreezeflash": "CMUC00172I unfreezeflash: FlashCopy consistency group for logical subsystem {id}: successfully reset.",  # UNVERIFIED ID
    "lsflash_none": "CMUC00234I lsflash: No Flash Copy found.",
    "query": "CMUC00183I",
}


class DsError(Exception):
    def __init__(self, key, **values):
        self.key = key
        self.code, self.kind, text = TABLE[key]
        self.text = text.format(**values)
        super().__init__(f"{self.code} {self.text}")

    @property
    def exit_code(self):
        return EXIT[self.kind]

    def http_status(self, notfound=False):
        return HTTP["notfound"] if notfound and self.key in ("no_volume", "no_relationship") \
            else HTTP[self.kind]
