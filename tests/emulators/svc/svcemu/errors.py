# SPDX-License-Identifier: MIT
"""The CMMVC messages the emulator answers with.

Role
  One table of codes and texts, so every assumption about what the array
  says lives here.  Texts are the reference's (§1.12); the ones it marks
  UNVERIFIED are marked so below too, and are our best guess.

Invariants
  E1  An SvcError always carries a code from MESSAGES; str() is the exact
      line the CLI prints on stderr ("CMMVCnnnnE text").
"""

MESSAGES = {
    "CMMVC5701E": "No object ID was specified.",
    "CMMVC5707E": ("An invalid or duplicated parameter, unaccompanied argument, or incorrect "
                   "argument sequence has been detected. Ensure that the input is as per the help."),
    "CMMVC5709E": "[-{arg}] is not a supported parameter.",
    # UNVERIFIED text; the code is CSI's INVALID_FILTER.
    "CMMVC5741E": "The filter flag {arg} is invalid.",
    "CMMVC5753E": "The specified object does not exist or is not a suitable candidate.",
    "CMMVC5754E": ("The specified object does not exist, or the name supplied does not meet "
                   "the naming rules."),
    "CMMVC5767E": "One or more of the parameters specified are invalid or a parameter is missing.",
    "CMMVC5804E": ("The action failed because an object that was specified in the command "
                   "does not exist."),
    "CMMVC5840E": ("The virtual disk (VDisk) was not deleted because it is mapped to a host or "
                   "because it is part of a FlashCopy or Remote Copy mapping, or is involved in "
                   "an image mode migrate."),
    # The simulator's text lacks "in"; the real one very probably has it.
    "CMMVC5903E": ("The FlashCopy mapping was not changed because the mapping or consistency "
                   "group is in another state."),
    # UNVERIFIED texts (codes from IBM's CSI driver).
    "CMMVC5907E": ("The FlashCopy mapping or consistency group was not started because the "
                   "mapping or consistency group is already in the copying state."),
    "CMMVC5912E": ("The FlashCopy mapping or consistency group was not stopped because the "
                   "mapping or consistency group is already in the stopped state."),
    "CMMVC5924E": ("The FlashCopy mapping was not created because the source and target "
                   "virtual disks (VDisks) are different sizes."),
    "CMMVC6035E": "The action failed as the object already exists.",
    "CMMVC6303E": "The create failed because the source and target VDisks are the same.",
    # UNVERIFIED text (code from CSI's FCMAP_ALREADY_EXIST).
    "CMMVC6466E": "The FlashCopy mapping was not created because an identical mapping already exists.",
    "CMMVC6527E": ("The name that you have entered is not valid. The name can contain letters, "
                   "numbers, spaces, periods, dashes, and underscores. The name must begin with a "
                   "letter or an underscore. The name must not begin or end with a space."),
    # UNVERIFIED text (code from ansible: "not supported on this code level").
    "CMMVC7205E": "The command failed because it is not supported.",
}


class SvcError(Exception):
    """A command refused with a CMMVC code (E1)."""

    def __init__(self, code, arg="", detail=""):
        assert code in MESSAGES, code
        self.code = code
        self.text = MESSAGES[code].format(arg=arg)
        # What the emulator knows beyond the array's text (e.g. pitcopy's own
        # message): logged, never printed, so output stays the array's.
        self.detail = detail
        super().__init__(str(self))

    def __str__(self):
        return f"{self.code} {self.text}"
