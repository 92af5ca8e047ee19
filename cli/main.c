/* SPDX-License-Identifier: MIT */
/*
 * cli/main.c — `pitcopy`: finds the command, hands it the rest of the line.
 *
 * Role
 *   The command words come first (`pitcopy map start nightly`); the common
 *   options (--state-dir, --json, --help) may come anywhere, the command's
 *   own options after its words.  Holds the command table with every
 *   command's usage and --help text, resolves the state directory
 *   (--state-dir, else $PITCOPY_STATE_DIR, else ./pitcopy-state), and owns
 *   the connection to the daemon.  The only file that exits (X2).
 *
 * Invariants
 *   X1, X2 (cli.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define STATE_HELP \
    "  --state-dir DIR   the daemon's state directory (default $PITCOPY_STATE_DIR,\n" \
    "                    else ./pitcopy-state); its control socket is DIR/control.sock\n" \
    "  --json            print the daemon's answer as JSON\n" \
    "  -h, --help        this help\n"

static const struct cli_cmd commands[] = {
    { NULL, "serve", cmd_serve,
      "serve [--state-dir DIR] [--nbd unix:PATH|tcp:[HOST]:PORT]... [--control PATH]\n"
      "            [--durability strict|none] [--workers N]\n"
      "            [--tls-creds DIR [--tls-verify-peer] | --tls-psk FILE]\n"
      "            [--tls off|on|require] [--insecure-tcp]",
      "Run the pitcopy daemon in the foreground: it owns the volumes, exports each\n"
      "one over NBD under its name, and answers the CLI on its control socket.  It\n"
      "logs one line per event to stderr and stops cleanly on SIGTERM or SIGINT\n"
      "(a second signal stops it at once, after saving the state).\n"
      "\n"
      "The state directory (created 0700) holds pitcopy.json (volumes and mappings,\n"
      "saved after every change and reloaded at start), meta/ (each mapping's state\n"
      "and split bitmap: a restart, even after a crash, finds every mapping as it\n"
      "was, progress included), volumes/ (default backing files), the lock that\n"
      "keeps a second daemon out, and the sockets (0600).\n"
      "\n"
      "Options:\n"
      "  --state-dir DIR        state directory (default $PITCOPY_STATE_DIR, else\n"
      "                         ./pitcopy-state)\n"
      "  --nbd unix:PATH        NBD on a Unix socket (default DIR/nbd.sock)\n"
      "  --nbd tcp:[HOST]:PORT  NBD on TCP; without a host, 127.0.0.1 only.  Give\n"
      "                         --nbd twice for both; any --nbd replaces the default.\n"
      "                         A host other hosts can reach (0.0.0.0, ::, a public\n"
      "                         address) needs TLS, or --insecure-tcp\n"
      "  --control PATH         control socket (default DIR/control.sock; the CLI\n"
      "                         looks only there)\n"
      "  --workers N            engine worker threads, 1 to 256 (default: one per CPU)\n"
      "  --tls-creds DIR        TLS with X.509 certificates: DIR holds server-cert.pem,\n"
      "                         server-key.pem and, to check clients, ca-cert.pem\n"
      "                         (the qemu and nbdkit layout; optional ca-crl.pem)\n"
      "  --tls-verify-peer      with --tls-creds: clients must present a certificate\n"
      "                         signed by ca-cert.pem\n"
      "  --tls-psk FILE         TLS with pre-shared keys: FILE holds username:hexkey\n"
      "                         lines, as `psktool -u USER -p FILE` writes them.\n"
      "                         server-key.pem and FILE must be mode 0600 or stricter\n"
      "                         and belong to the user pitcopy runs as\n"
      "  --tls require          (the default with credentials) on every listener,\n"
      "                         clients must start TLS before they learn anything\n"
      "  --tls on               clients choose TLS or plain NBD\n"
      "  --tls off              (the default without credentials) plain NBD only\n"
      "  --insecure-tcp         serve plain NBD (or --tls on) on a TCP address other\n"
      "                         hosts can reach: anyone on that network can then read\n"
      "                         and write every volume.  Only for a network you trust\n"
      "  --durability strict    (default) a source write reaches the disk only after\n"
      "                         the old contents and the bit recording their copy\n"
      "                         are durable: targets survive crashes and power loss\n"
      "  --durability none      no metadata syncs (scratch targets, benchmarks): after\n"
      "                         a crash such mappings come back stopped and invalid;\n"
      "                         an orderly stop still saves them\n"
      "  -h, --help             this help\n"
      "\n"
      "Example:\n"
      "  pitcopy serve --state-dir /var/lib/pitcopy/default --nbd tcp::10809\n"
      "  pitcopy serve --nbd tcp:0.0.0.0:10809 --tls-creds /etc/pki/pitcopy\n"
      "      (clients: nbdinfo 'nbds://HOST/VOLUME?tls-certificates=DIR', where DIR\n"
      "      holds ca-cert.pem)\n" },
    { NULL, "status", cmd_status,
      "status [--json]",
      "Show the daemon: version, uptime, I/O backend, workers, how many volumes and\n"
      "mappings (by state), NBD connections, and anything skipped at start.\n"
      "\n"
      "Options:\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy status --state-dir /var/lib/pitcopy/default\n" },
    { "volume", "create", cmd_volume_create,
      "volume create NAME --size SIZE [--file PATH]",
      "Create a volume: a backing file (created sparse if missing) exported over\n"
      "NBD as NAME.  An existing file must have exactly SIZE bytes.\n"
      "\n"
      "Options:\n"
      "  --size SIZE       bytes, or with K, M, G, T (powers of 1024): 10G; a\n"
      "                    multiple of 4 KiB\n"
      "  --file PATH       backing file or block device (default\n"
      "                    DIR/volumes/NAME.img)\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy volume create db --size 20G\n"
      "  pitcopy volume create db-copy --size 20G --file /srv/copies/db.img\n" },
    { "volume", "list", cmd_volume_list,
      "volume list [--json]",
      "List the volumes: name, size, backing file, and the mappings they are in.\n"
      "\n"
      "Options:\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy volume list --json | jq -r '.volumes[].name'\n" },
    { "volume", "show", cmd_volume_show,
      "volume show NAME [--json]",
      "Show one volume: size, backing file, whether it uses O_DIRECT, and the\n"
      "mappings it is the source or target of.\n"
      "\n"
      "Options:\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy volume show db\n" },
    { "volume", "delete", cmd_volume_delete,
      "volume delete NAME [--keep-file]",
      "Delete a volume and remove its backing file (a regular file only: a block\n"
      "device is never removed).  A volume in a mapping, or exported to a\n"
      "connected NBD client, cannot be deleted.\n"
      "\n"
      "Options:\n"
      "  --keep-file       leave the backing file in place\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy volume delete db-copy --keep-file\n" },
    { "map", "create", cmd_map_create,
      "map create SOURCE TARGET [--name NAME] [--grain SIZE] [--copy-rate RATE] "
      "[--clean-rate RATE] [--group G] [--autodelete] [--incremental]",
      "Create a mapping SOURCE -> TARGET (volumes of the same size).  It starts\n"
      "idle_or_copied; `pitcopy map start` makes the point-in-time copy.\n"
      "\n"
      "Options:\n"
      "  --name NAME       the mapping's name (default fcmapN)\n"
      "  --grain SIZE      grain size, a power of two from 4K to 1M (default 64K;\n"
      "                    all mappings of one source share it)\n"
      "  --copy-rate RATE  background copy rate 0-150 or unlimited (default 50 =\n"
      "                    2 MiB/s; 0 = no background copy)\n"
      "  --clean-rate RATE cleaning rate, likewise (default 50)\n"
      "  --group G         member of consistency group G (`pitcopy group create`):\n"
      "                    prepared, started and stopped with the group\n"
      "  --autodelete      delete the mapping once its background copy completes\n"
      "                    (and no older mapping reads through its target)\n"
      "  --incremental     record the grains written on source or target since\n"
      "                    each start; a start after a complete copy copies only\n"
      "                    those (NBD meta context pitcopy:changed shows them)\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy map create db db-copy --name nightly --copy-rate 80\n"
      "  pitcopy map create db db-clone --copy-rate unlimited --autodelete\n" },
    { "map", "prepare", cmd_map_prepare,
      "map prepare NAME",
      "Prepare a mapping (idle_or_copied or stopped -> prepared): its target goes\n"
      "offline, ready for the start.  Cleans first if older mappings still read\n"
      "through its target.\n"
      "\n"
      "Options:\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy map prepare nightly\n" },
    { "map", "start", cmd_map_start,
      "map start NAME [--restore]",
      "Start a mapping: the point in time.  Writes to the source are held for a\n"
      "moment (reported), then the target reads as the source did at that instant\n"
      "while the background copy fills it.  Prepares first when needed.\n"
      "\n"
      "Options:\n"
      "  --restore         NAME goes from a target T back to its source S (made with\n"
      "                    `map create T S` while S -> T exists): S reads as T at\n"
      "                    once, and the copy makes it so on disk at NAME's copy\n"
      "                    rate.  T and S's other targets keep their points in\n"
      "                    time.  Meanwhile S's other mappings cannot start or stop;\n"
      "                    stopped unfinished, S is offline until restarted.\n"
      STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy map start nightly && pitcopy map wait nightly\n"
      "  pitcopy map create checkpoint ledger --name undo --copy-rate unlimited\n"
      "  pitcopy map start undo --restore && pitcopy map wait undo\n" },
    { "map", "stop", cmd_map_stop,
      "map stop NAME [--split]",
      "Stop a copying or prepared mapping.  A copying one first cleans (stopping):\n"
      "the grains older mappings of its source still read through its target go\n"
      "to them at the clean rate; it ends stopped, its target offline, or\n"
      "idle_or_copied if the copy was complete.  A member of a consistency group\n"
      "stops with its group.\n"
      "\n"
      "Options:\n"
      "  --split           only at progress 100: the target becomes an independent\n"
      "                    copy at once (it stays online); what older mappings need\n"
      "                    from it is cleaned at full speed, whatever the clean rate\n"
      STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy map stop nightly && pitcopy map wait nightly --state stopped\n" },
    { "map", "delete", cmd_map_delete,
      "map delete NAME [--force]",
      "Delete an idle_or_copied or stopped mapping; the volumes stay.\n"
      "\n"
      "Options:\n"
      "  --force           stop a copying mapping first (and wait for its cleaning)\n"
      STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy map delete nightly --force\n" },
    { "map", "set", cmd_map_set,
      "map set NAME [--copy-rate RATE] [--clean-rate RATE] [--group G | --no-group] "
      "[--autodelete on|off]",
      "Change a mapping's rates (at any time, taking effect at once), its\n"
      "consistency group (while idle_or_copied or stopped) or autodelete.\n"
      "\n"
      "Options:\n"
      "  --copy-rate RATE  0-150 or unlimited\n"
      "  --clean-rate RATE 0-150 or unlimited\n"
      "  --group G         join consistency group G\n"
      "  --no-group        leave its consistency group\n"
      "  --autodelete on|off  on: delete the mapping once its copy completes (at\n"
      "                    once if it has)\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy map set nightly --copy-rate unlimited\n" },
    { "map", "list", cmd_map_list,
      "map list [--json]",
      "List the mappings: source, target, state, progress and rates.\n"
      "\n"
      "Options:\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy map list\n" },
    { "map", "show", cmd_map_show,
      "map show NAME [--json]",
      "Show one mapping: state, progress (grains split of all), grain size, copy\n"
      "and clean rates, whether the target is online, the mappings that depend\n"
      "on it, the grains a stop would clean, and how long its last start held\n"
      "writes.\n"
      "\n"
      "Options:\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy map show nightly --json | jq .progress\n" },
    { "map", "wait", cmd_map_wait,
      "map wait NAME [--state STATE] [--timeout SECONDS]",
      "Wait until a mapping reaches a state, with a progress bar on a terminal\n"
      "(plain lines otherwise).  Without --state it waits for what the mapping is\n"
      "doing to end: copying -> idle_or_copied, stopping -> stopped (or\n"
      "idle_or_copied if the copy was complete), preparing -> prepared; and fails\n"
      "if it settles anywhere else.\n"
      "\n"
      "Options:\n"
      "  --state STATE     idle_or_copied, preparing, prepared, copying, stopping,\n"
      "                    stopped or suspended\n"
      "  --timeout SECONDS give up after this long (30, 1.5, 10m, 2h); exit 1\n"
      STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy map wait nightly --timeout 2h\n" },
    { "group", "create", cmd_group_create,
      "group create NAME",
      "Create a consistency group: mappings that start at one point in time.  Add\n"
      "mappings with `pitcopy map create ... --group NAME` or `map set --group`.\n"
      "\n"
      "Options:\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy group create bank\n"
      "  pitcopy map create db-log  log-copy   --group bank\n"
      "  pitcopy map create db-data data-copy  --group bank\n"
      "  pitcopy group start bank\n" },
    { "group", "delete", cmd_group_delete,
      "group delete NAME [--force]",
      "Delete a consistency group.\n"
      "\n"
      "Options:\n"
      "  --force           delete it although it has mappings: they stay,\n"
      "                    stand-alone, in whatever state they are\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy group delete bank --force\n" },
    { "group", "list", cmd_group_list,
      "group list [--json]",
      "List the consistency groups: state, number of mappings, last start.\n"
      "\n"
      "Options:\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy group list\n" },
    { "group", "show", cmd_group_show,
      "group show NAME [--json]",
      "Show a consistency group: its state (empty without mappings; else its\n"
      "mappings' state, or the one needing attention when they differ), its\n"
      "mappings, and how long its last start held writes.  `pitcopy map list`\n"
      "gives each member's progress.\n"
      "\n"
      "Options:\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy group show bank --json | jq .mappings\n" },
    { "group", "prepare", cmd_group_prepare,
      "group prepare NAME",
      "Prepare every mapping of the group (each flushes its source); their targets\n"
      "go offline, ready for the start.\n"
      "\n"
      "Options:\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy group prepare bank\n" },
    { "group", "start", cmd_group_start,
      "group start NAME [--restore]",
      "Start every mapping of the group at one point in time: writes to all their\n"
      "sources are held at once for a moment (reported; it does not grow with the\n"
      "size of the volumes), so a write that depends on another (a table after\n"
      "its log) is never in a copy without the one before it.  Prepares first.\n"
      "\n"
      "Options:\n"
      "  --restore         the group's mappings are restore mappings (see `map\n"
      "                    start --restore`): every source is restored from its\n"
      "                    copy at one instant\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy group start bank\n" },
    { "group", "stop", cmd_group_stop,
      "group stop NAME [--split]",
      "Stop every started mapping of the group (see `pitcopy map stop`).\n"
      "\n"
      "Options:\n"
      "  --split           every mapping must be at progress 100; each target\n"
      "                    becomes an independent copy at once\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy group stop bank\n" },
    { "system", "add", cmd_system_add,
      "system add NAME --type local\n"
      "       system add NAME --type svc --host HOST [--port 22] --user USER [--key FILE]\n"
      "                  [--known-hosts FILE]\n"
      "       system add NAME --type svc --rest https://HOST:7443 --user USER\n"
      "                  --password-file FILE [--cacert FILE] [--insecure]",
      "Add a storage system sessions can use.  Type local is this daemon's own\n"
      "engine (the copy sets' volumes are its volumes).  Type svc is an IBM\n"
      "Spectrum Virtualize array (SVC, Storwize, FlashSystem): the array makes\n"
      "the copies with its FlashCopy mappings, driven over SSH or its REST API.\n"
      "Nothing is sent to the array until a session uses it.\n"
      "\n"
      "Options:\n"
      "  --type TYPE            local or svc\n"
      "  --host HOST            svc over SSH: the array's management address; the\n"
      "                         system ssh client runs with BatchMode=yes and\n"
      "                         StrictHostKeyChecking=yes, your ~/.ssh/config,\n"
      "                         known_hosts and agent\n"
      "  --port N               SSH port (22)\n"
      "  --user USER            the array's user name\n"
      "  --key FILE             SSH: this private key only (else your agent/keys)\n"
      "  --known-hosts FILE     SSH: the array's host key is in FILE, not in\n"
      "                         ~/.ssh/known_hosts\n"
      "  --rest URL             svc over REST: https://HOST:7443 (POST URL/rest/...)\n"
      "  --password-file FILE   REST: the password, one line; the file must be\n"
      "                         yours and mode 0600; it is read at each login, the\n"
      "                         catalog keeps only its path\n"
      "  --cacert FILE          REST: the CA that signed the array's certificate\n"
      "  --insecure             REST: do not verify the array's certificate\n" STATE_HELP
      "\n"
      "Examples:\n"
      "  pitcopy system add here --type local\n"
      "  pitcopy system add fs9500 --type svc --host fs9500.example.com --user pitcopy\n"
      "  pitcopy system add fs9500 --type svc --rest https://fs9500.example.com:7443 \\\n"
      "      --user pitcopy --password-file ~/.config/pitcopy/fs9500.pw\n" },
    { "system", "list", cmd_system_list,
      "system list [--json]",
      "List the storage systems and how many sessions use each.\n"
      "\n"
      "Options:\n" STATE_HELP },
    { "system", "show", cmd_system_show,
      "system show NAME [--json]",
      "Show one storage system and the sessions on it.\n"
      "\n"
      "Options:\n" STATE_HELP },
    { "system", "remove", cmd_system_remove,
      "system remove NAME",
      "Remove a storage system no session uses.\n"
      "\n"
      "Options:\n" STATE_HELP },
    { "system", "clock", cmd_system_clock,
      "system clock [--set TIME]",
      "Print the management layer's clock (what schedules follow).  --set works\n"
      "only in a daemon started with PITCOPY_TEST_CLOCK=TIME (tests and demos):\n"
      "the clock then starts at TIME and runs on; --set moves it, and schedules\n"
      "due by the new time fire at once.\n"
      "\n"
      "Options:\n"
      "  --set TIME        local time, 2024-05-01T23:59:00\n" STATE_HELP },
    { "session", "create", cmd_session_create,
      "session create NAME --system SYS [--description TEXT]",
      "Create a FlashCopy session on a storage system: state Defined, status\n"
      "Inactive, no copy sets yet.  NAME: up to 40 letters, digits, '-', '_', '.'.\n"
      "\n"
      "Options:\n"
      "  --system SYS      the system its copy sets are on (pitcopy system add)\n"
      "  --description T   free text\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy session create nightly --system here --description 'ledger at 23:59'\n" },
    { "session", "add-copyset", cmd_session_add_copyset,
      "session add-copyset NAME --h1 VOLUME --t1 VOLUME",
      "Add a copy set: host volume H1 and target T1, of the same size.  A target\n"
      "belongs to one copy set only; a host volume may be in several sessions.\n"
      "\n"
      "Options:\n"
      "  --h1 VOLUME       the host (source) volume\n"
      "  --t1 VOLUME       the target volume\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy session add-copyset nightly --h1 ledger --t1 checkpoint\n" },
    { "session", "remove-copyset", cmd_session_remove_copyset,
      "session remove-copyset NAME --h1 VOLUME",
      "Remove the copy set of host volume H1.  Terminate the session first if\n"
      "the copy set has a mapping.\n"
      "\n"
      "Options:\n"
      "  --h1 VOLUME       the copy set's host volume\n" STATE_HELP },
    { "session", "list", cmd_session_list,
      "session list [--json]",
      "List the sessions: system, state, status, copy sets, last action.\n"
      "\n"
      "Options:\n" STATE_HELP },
    { "session", "show", cmd_session_show,
      "session show NAME [--json]",
      "Show a session: state and status (checked against the engine: a\n"
      "suspended or missing mapping makes it Suspended, Severe), hooks, the last\n"
      "action with its freeze and write hold, and every copy set with its\n"
      "mapping's state and progress.\n"
      "\n"
      "Options:\n" STATE_HELP },
    { "session", "delete", cmd_session_delete,
      "session delete NAME [--force]",
      "Delete a session (its history stays).  A session whose mappings exist\n"
      "must be terminated first, or deleted with --force (which terminates it).\n"
      "A session with schedules cannot be deleted.\n"
      "\n"
      "Options:\n"
      "  --force           terminate first\n" STATE_HELP },
    { "session", "set", cmd_session_set,
      "session set NAME [--pre-flash CMD] [--post-flash CMD] [--hook-timeout S]\n"
      "            [--copy-rate RATE] [--description TEXT]",
      "Change a session's settings.  The hooks run with /bin/sh -c in their own\n"
      "process group, with PITCOPY_SESSION, PITCOPY_ACTION, PITCOPY_HOOK\n"
      "(pre-flash or post-flash), PITCOPY_STATE_DIR and, for the post-flash hook,\n"
      "PITCOPY_FLASH_OK (yes or no) in the environment.\n"
      "\n"
      "A flash (and start) runs the pre-flash hook (quiesce the application);\n"
      "if it fails or outlives the timeout (it is killed), nothing is flashed and\n"
      "the action fails.  Once it succeeded, the post-flash hook (thaw) always\n"
      "runs, whether the flash worked or not.  The time from the end of the\n"
      "pre-flash hook to the start of the post-flash hook is the freeze.\n"
      "\n"
      "Options:\n"
      "  --pre-flash CMD   quiesce command (\"\" removes it)\n"
      "  --post-flash CMD  thaw command (\"\" removes it)\n"
      "  --hook-timeout S  seconds each hook may run, 1-86400 (default 300)\n"
      "  --copy-rate RATE  0-150: background copy of the flash (default 0: none;\n"
      "                    start and initiate-background-copy use 100 then)\n"
      "  --description T   free text\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy session set nightly --pre-flash 'db-ctl quiesce' \\\n"
      "      --post-flash 'db-ctl resume' --hook-timeout 60\n" },
    { "session", "flash", cmd_session_flash,
      "session flash NAME [--dry-run]",
      "Flash: every copy set at one point in time, through the session's\n"
      "consistency group (csm-NAME), between the pre-flash and post-flash hooks.\n"
      "States: Preparing, Prepared, then Target Available.  A session flashed\n"
      "before is flashed anew (its previous image is replaced).  Exits 1 if any\n"
      "step failed, hooks included.\n"
      "\n"
      "Options:\n"
      "  --dry-run         print the exact requests it would send; change nothing,\n"
      "                    run no hook\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy session flash nightly\n" },
    { "session", "start", cmd_session_start,
      "session start NAME [--copy-rate RATE] [--dry-run]",
      "Start (incremental): flash like `session flash`, with background copy, and\n"
      "copy only the grains that changed since the last start (incremental\n"
      "mappings): a refresh of the targets.\n"
      "\n"
      "Options:\n"
      "  --copy-rate RATE  0-150 (default the session's, else 100)\n"
      "  --dry-run         print the requests it would send\n" STATE_HELP },
    { "session", "initiate-background-copy", cmd_session_background_copy,
      "session initiate-background-copy NAME [--copy-rate RATE] [--dry-run]",
      "Copy every grain still shared with H1 to the targets, so they become\n"
      "full, independent copies.\n"
      "\n"
      "Options:\n"
      "  --copy-rate RATE  0-150 (default the session's, else 100)\n"
      "  --dry-run         print the requests it would send\n" STATE_HELP },
    { "session", "terminate", cmd_session_terminate,
      "session terminate NAME [--dry-run]",
      "Terminate: stop and delete the session's mappings and group; the session\n"
      "goes back to Defined, Inactive (the volumes stay).\n"
      "\n"
      "Options:\n"
      "  --dry-run         print the requests it would send\n" STATE_HELP },
    { "session", "restore", cmd_session_restore,
      "session restore NAME [--dry-run]",
      "Restore: copy every T1 back onto its H1 (reverse mappings started with\n"
      "restore); state Recovering until the copy is done.\n"
      "\n"
      "Options:\n"
      "  --dry-run         print the requests it would send\n" STATE_HELP },
    { "session", "history", cmd_session_history,
      "session history NAME [--limit N]",
      "The session's history, oldest first: every action and hook, with start,\n"
      "duration, origin (cli or the schedule), outcome (ok, failed, timeout,\n"
      "skipped, interrupted) and message.  Kept after the session is deleted.\n"
      "\n"
      "Options:\n"
      "  --limit N         the last N entries (default 100)\n" STATE_HELP },
    { "schedule", "add", cmd_schedule_add,
      "schedule add NAME --session S --action ACTION --cron EXPR [--missed run|skip]",
      "Run a session action at the times of a cron expression, from the daemon\n"
      "(pitcopy serve), local time.  EXPR is \"minute hour day-of-month month\n"
      "day-of-week\": *, numbers, ranges 1-5, steps */15, lists 1,15, names\n"
      "(jan, mon).\n"
      "\n"
      "Options:\n"
      "  --session S       the session\n"
      "  --action ACTION   flash, start, initiate-background-copy, terminate,\n"
      "                    restore\n"
      "  --cron EXPR       when\n"
      "  --missed run      (default) a run missed while the daemon was down runs\n"
      "                    once when it starts\n"
      "  --missed skip     a missed run is recorded as skipped\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy schedule add nightly-flash --session nightly --action flash \\\n"
      "      --cron '59 23 * * *'\n" },
    { "schedule", "list", cmd_schedule_list,
      "schedule list [--json]",
      "List the schedules with their next run, last run and its outcome.\n"
      "\n"
      "Options:\n" STATE_HELP },
    { "schedule", "show", cmd_schedule_show,
      "schedule show NAME [--json]",
      "Show one schedule.\n"
      "\n"
      "Options:\n" STATE_HELP },
    { "schedule", "remove", cmd_schedule_remove,
      "schedule remove NAME",
      "Remove a schedule (its runs stay in the session's history).\n"
      "\n"
      "Options:\n" STATE_HELP },
    { "schedule", "print-crontab", cmd_schedule_print_crontab,
      "schedule print-crontab [--json]",
      "Print the schedules as crontab(5) lines running this pitcopy against this\n"
      "state directory, for people who prefer cron.  Remove the schedules from\n"
      "the daemon if you install the lines, or both will run.\n"
      "\n"
      "Options:\n" STATE_HELP
      "\n"
      "Example:\n"
      "  pitcopy schedule print-crontab >> my.crontab\n" },
};

#define NCMDS (sizeof commands / sizeof commands[0])

/* A word that takes a subcommand (`pitcopy map start`): any group in the table. */
static bool is_noun(const char *w)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (commands[i].group && strcmp(commands[i].group, w) == 0)
            return true;
    return false;
}

static void print_main_help(FILE *f)
{
    fprintf(f,
            "usage: pitcopy COMMAND [ARGS] [--state-dir DIR] [--json] [--help]\n"
            "\n"
            "pitcopy makes point-in-time copies of block volumes (FlashCopy semantics).\n"
            "`pitcopy serve` runs the daemon; every other command asks it.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < NCMDS; i++) {
        char line[512];
        snprintf(line, sizeof line, "%s", commands[i].usage);
        fprintf(f, "  pitcopy %s\n", line);
    }
    fprintf(f,
            "\n"
            "Every command takes --state-dir DIR (default $PITCOPY_STATE_DIR, else\n"
            "./pitcopy-state), --json and --help.  Exit status: 0 done, 1 refused or\n"
            "failed, 2 bad command line, 3 cannot reach the daemon.\n"
            "\n"
            "Example:\n"
            "  pitcopy serve --state-dir /tmp/pc &\n"
            "  pitcopy --state-dir /tmp/pc volume create db --size 1G\n"
            "  pitcopy --state-dir /tmp/pc volume create db-copy --size 1G\n"
            "  pitcopy --state-dir /tmp/pc map create db db-copy --name nightly\n"
            "  pitcopy --state-dir /tmp/pc map start nightly\n");
}

static void print_group_help(FILE *f, const char *group)
{
    fprintf(f, "usage: pitcopy %s SUBCOMMAND [ARGS]\n\nSubcommands:\n", group);
    for (size_t i = 0; i < NCMDS; i++)
        if (commands[i].group && strcmp(commands[i].group, group) == 0)
            fprintf(f, "  pitcopy %s\n", commands[i].usage);
    fprintf(f, "\n'pitcopy %s SUBCOMMAND --help' says more about each.\n", group);
}

static void print_cmd_help(const struct cli_cmd *c)
{
    printf("usage: pitcopy %s\n\n%s", c->usage, c->help);
}

static const char *cmd_title(const struct cli_cmd *c, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s", c->group ? c->group : "", c->group ? " " : "", c->name);
    return buf;
}

int cli_usage_error(struct cli_ctx *ctx, const char *fmt, ...)
{
    char msg[512], title[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ctx->cmd) {
        cmd_title(ctx->cmd, title, sizeof title);
        fprintf(stderr, "pitcopy: %s: %s\nusage: pitcopy %s\nTry 'pitcopy %s --help'.\n",
                title, msg, ctx->cmd->usage, title);
    } else {
        fprintf(stderr, "pitcopy: %s\nTry 'pitcopy --help'.\n", msg);
    }
    return CLI_USAGE;
}

void cli_what(struct cli_ctx *ctx, const char *object)
{
    char title[64];
    cmd_title(ctx->cmd, title, sizeof title);
    snprintf(ctx->what, sizeof ctx->what, "%s%s%s", title, object ? " " : "",
             object ? object : "");
}

int cli_parse(struct cli_ctx *ctx, int argc, char **argv, const struct args_opt *opts,
              struct args *a, int min_pos, int max_pos)
{
    char err[256];
    if (args_parse(argc, argv, opts, a, err, sizeof err) < 0)
        return ctx->help ? (print_cmd_help(ctx->cmd), CLI_OK) : cli_usage_error(ctx, "%s", err);
    if (ctx->help) {
        print_cmd_help(ctx->cmd);
        return CLI_OK;
    }
    if (a->npos < min_pos)
        return cli_usage_error(ctx, "missing argument%s", min_pos - a->npos > 1 ? "s" : "");
    if (a->npos > max_pos)
        return cli_usage_error(ctx, "unexpected argument '%s'", a->pos[max_pos]);
    ctx->state_dir = ctx->state_dir_opt ? ctx->state_dir_opt : getenv("PITCOPY_STATE_DIR");
    if (!ctx->state_dir || !*ctx->state_dir)
        ctx->state_dir = "./pitcopy-state";
    if ((size_t)snprintf(ctx->sock, sizeof ctx->sock, "%s/%s", ctx->state_dir,
                         CTL_SOCK_NAME) >= sizeof ctx->sock)
        return cli_usage_error(ctx, "--state-dir: the path is too long");
    cli_what(ctx, a->npos ? a->pos[0] : NULL);
    return -1;
}

static void print_failure(struct cli_ctx *ctx, const struct pc_error *err, bool prefix)
{
    if (prefix)
        fprintf(stderr, "pitcopy: %s: %s\n", ctx->what, err->msg);
    else
        fprintf(stderr, "pitcopy: %s\n", err->msg);
    if (ctx->json) {
        json_t *j = json_pack("{s:{s:i, s:s}}", "error", "code", err->code, "message", err->msg);
        out_json(j);
        json_decref(j);
    }
}

int cli_query(struct cli_ctx *ctx, int argc, char **argv, const char *method, bool by_name,
              void (*print)(const json_t *res))
{
    struct args_opt opts[] = { CLI_COMMON_OPTS(ctx), ARGS_OPT_END };
    struct args a;
    json_t *res;
    int rc = cli_parse(ctx, argc, argv, opts, &a, by_name, by_name);
    if (rc >= 0)
        return rc;
    rc = cli_call(ctx, method, by_name ? json_pack("{s:s}", "name", a.pos[0]) : NULL,
                  CLI_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json)
        out_json(res);
    else
        print(res);
    json_decref(res);
    return CLI_OK;
}

int cli_call_quiet(struct cli_ctx *ctx, const char *method, json_t *params, int timeout_ms,
                   json_t **result, struct pc_error *err)
{
    *result = NULL;
    if (!ctx->client && ctl_client_connect(ctx->sock, &ctx->client, err) < 0) {
        json_decref(params);
        return CLI_NODAEMON;
    }
    if (ctl_client_call(ctx->client, method, params, timeout_ms, result, err) < 0)
        return ctl_client_broken(ctx->client) ? CLI_NODAEMON : CLI_FAIL;
    return CLI_OK;
}

int cli_fail(struct cli_ctx *ctx, int rc, const struct pc_error *err)
{
    print_failure(ctx, err, rc == CLI_FAIL);
    return rc;
}

int cli_call(struct cli_ctx *ctx, const char *method, json_t *params, int timeout_ms,
             json_t **result)
{
    struct pc_error err = { 0 };
    int rc = cli_call_quiet(ctx, method, params, timeout_ms, result, &err);
    return rc ? cli_fail(ctx, rc, &err) : CLI_OK;
}

static bool is_common(const char *a, bool *takes_value)
{
    *takes_value = strcmp(a, "--state-dir") == 0;
    return *takes_value || strncmp(a, "--state-dir=", 12) == 0 || strcmp(a, "--json") == 0 ||
           strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

int main(int argc, char **argv)
{
    struct cli_ctx ctx = { 0 };
    int words[3], nw = 0, need = 1, rc;
    bool help = false, version = false, takes;
    const char *bad_opt = NULL;

    /* The command words: the first words that are not common options. */
    for (int i = 1; i < argc && nw < need; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            break;
        if (is_common(a, &takes)) {
            help |= strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
            i += takes;
            continue;
        }
        if (strcmp(a, "--version") == 0 && nw == 0) {
            version = true;
            continue;
        }
        if (a[0] == '-' && a[1]) {
            bad_opt = a;
            break;
        }
        words[nw++] = i;
        if (nw == 1 && is_noun(a))
            need = 2;
        if (nw == 1 && strcmp(a, "help") == 0)
            need = 3;   /* pitcopy help map wait */
    }
    if (nw == 0) {
        if (version) {
            printf("pitcopy %s\n", PITCOPY_VERSION);
            return CLI_OK;
        }
        if (help) {
            print_main_help(stdout);
            return CLI_OK;
        }
        if (bad_opt)
            return cli_usage_error(&ctx, "unknown option %s (before the command)", bad_opt);
        print_main_help(stderr);
        return CLI_USAGE;
    }
    const char *w0 = argv[words[0]], *w1 = nw > 1 ? argv[words[1]] : NULL;
    if (strcmp(w0, "help") == 0) {
        help = true;
        if (!w1) {
            print_main_help(stdout);
            return CLI_OK;
        }
        w0 = w1;
        w1 = nw > 2 ? argv[words[2]] : NULL;
        if (!is_noun(w0))
            w1 = NULL;
    }
    bool group = is_noun(w0);
    if (group && !w1) {
        if (help) {
            print_group_help(stdout, w0);
            return CLI_OK;
        }
        if (bad_opt)
            fprintf(stderr, "pitcopy: %s: unknown option %s (before the subcommand)\n",
                    w0, bad_opt);
        else
            fprintf(stderr, "pitcopy: %s: missing subcommand\n", w0);
        print_group_help(stderr, w0);
        return CLI_USAGE;
    }
    for (size_t i = 0; i < NCMDS && !ctx.cmd; i++)
        if ((group ? commands[i].group && strcmp(commands[i].group, w0) == 0 &&
                     strcmp(commands[i].name, w1) == 0
                   : !commands[i].group && strcmp(commands[i].name, w0) == 0))
            ctx.cmd = &commands[i];
    if (!ctx.cmd) {
        if (group)
            fprintf(stderr, "pitcopy: %s: unknown subcommand '%s'\n", w0, w1);
        else
            fprintf(stderr, "pitcopy: unknown command '%s'\n", w0);
        if (group)
            print_group_help(stderr, w0);
        else
            fprintf(stderr, "Try 'pitcopy --help'.\n");
        return CLI_USAGE;
    }
    if (strcmp(argv[words[0]], "help") == 0) {
        print_cmd_help(ctx.cmd);
        return CLI_OK;
    }

    /* The rest of the line, without the command words, goes to the command. */
    char **rest = calloc((size_t)argc, sizeof *rest);
    int nrest = 0;
    if (!rest) {
        fprintf(stderr, "pitcopy: out of memory\n");
        return CLI_FAIL;
    }
    for (int i = 1; i < argc; i++)
        if (i != words[0] && (nw < 2 || i != words[1]))
            rest[nrest++] = argv[i];
    rc = ctx.cmd->fn(&ctx, nrest, rest);
    ctl_client_close(ctx.client);
    free(rest);
    fflush(stdout);
    if (ferror(stdout) && rc == CLI_OK) {
        fprintf(stderr, "pitcopy: cannot write the output\n");
        rc = CLI_FAIL;
    }
    return rc;
}
