/* SPDX-License-Identifier: MIT */
/*
 * nbd/wire.h — the NBD protocol on the wire: constants and packed structs.
 *
 * Role
 *   What the NetworkBlockDevice protocol document (doc/proto.md, "Values")
 *   defines, as pitcopy speaks it: fixed newstyle negotiation and the
 *   transmission phase with simple and structured replies.  Nothing here but
 *   wire layout: every multi-byte field is big-endian on the wire (convert
 *   with htobe16/32/64 and be16/32/64toh), and the structs are packed so
 *   sizeof is the size on the wire (checked below).
 *
 * Invariants
 *   W1  sizeof of each struct equals its length on the wire.
 */
#ifndef PITCOPY_NBD_WIRE_H
#define PITCOPY_NBD_WIRE_H

#include <stdint.h>

/* ------------------------------------------------------------- handshake */

#define NBD_MAGIC               UINT64_C(0x4e42444d41474943)   /* "NBDMAGIC" */
#define NBD_IHAVEOPT            UINT64_C(0x49484156454f5054)   /* "IHAVEOPT" */
#define NBD_REP_MAGIC           UINT64_C(0x0003e889045565a9)

/* Handshake flags (server, 16 bits). */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES      (1u << 1)

/* Client flags (32 bits). */
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* Transmission flags (16 bits). */
#define NBD_FLAG_HAS_FLAGS          (1u << 0)
#define NBD_FLAG_READ_ONLY          (1u << 1)
#define NBD_FLAG_SEND_FLUSH         (1u << 2)
#define NBD_FLAG_SEND_FUA           (1u << 3)
#define NBD_FLAG_ROTATIONAL         (1u << 4)
#define NBD_FLAG_SEND_TRIM          (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1u << 6)
#define NBD_FLAG_SEND_DF            (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1u << 8)
#define NBD_FLAG_SEND_RESIZE        (1u << 9)
#define NBD_FLAG_SEND_CACHE         (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO     (1u << 11)

/* Options. */
#define NBD_OPT_EXPORT_NAME         1
#define NBD_OPT_ABORT               2
#define NBD_OPT_LIST                3
#define NBD_OPT_PEEK_EXPORT         4
#define NBD_OPT_STARTTLS            5
#define NBD_OPT_INFO                6
#define NBD_OPT_GO                  7
#define NBD_OPT_STRUCTURED_REPLY    8
#define NBD_OPT_LIST_META_CONTEXT   9
#define NBD_OPT_SET_META_CONTEXT    10
#define NBD_OPT_EXTENDED_HEADERS    11

/* Option replies. */
#define NBD_REP_ACK                 1u
#define NBD_REP_SERVER              2u
#define NBD_REP_INFO                3u
#define NBD_REP_META_CONTEXT        4u
#define NBD_REP_ERR(n)              ((1u << 31) + (n))
#define NBD_REP_ERR_UNSUP           NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY          NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID         NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM        NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD        NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN         NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN        NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG         NBD_REP_ERR(9)

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT             0
#define NBD_INFO_NAME               1
#define NBD_INFO_DESCRIPTION        2
#define NBD_INFO_BLOCK_SIZE         3

/* The server's first message (fixed newstyle). */
struct nbd_greeting {
    uint64_t nbdmagic;          /* NBD_MAGIC */
    uint64_t version;           /* NBD_IHAVEOPT */
    uint16_t gflags;            /* NBD_FLAG_FIXED_NEWSTYLE | ... */
} __attribute__((packed));

/* The client's option header, followed by len bytes of data. */
struct nbd_option {
    uint64_t version;           /* NBD_IHAVEOPT */
    uint32_t option;
    uint32_t len;
} __attribute__((packed));

/* The server's option reply header, followed by len bytes of data. */
struct nbd_option_reply {
    uint64_t magic;             /* NBD_REP_MAGIC */
    uint32_t option;
    uint32_t reply;
    uint32_t len;
} __attribute__((packed));

/* NBD_OPT_EXPORT_NAME's reply (then 124 zero bytes unless NO_ZEROES). */
struct nbd_export_name_reply {
    uint64_t size;
    uint16_t eflags;
} __attribute__((packed));
#define NBD_EXPORT_NAME_PAD 124

struct nbd_info_export {
    uint16_t info;              /* NBD_INFO_EXPORT */
    uint64_t size;
    uint16_t eflags;
} __attribute__((packed));

struct nbd_info_block_size {
    uint16_t info;              /* NBD_INFO_BLOCK_SIZE */
    uint32_t minimum;
    uint32_t preferred;
    uint32_t maximum;
} __attribute__((packed));

/* ---------------------------------------------------------- transmission */

#define NBD_REQUEST_MAGIC           0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC      0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC  0x668e33efu

/* Commands. */
#define NBD_CMD_READ                0
#define NBD_CMD_WRITE               1
#define NBD_CMD_DISC                2
#define NBD_CMD_FLUSH               3
#define NBD_CMD_TRIM                4
#define NBD_CMD_CACHE               5
#define NBD_CMD_WRITE_ZEROES        6
#define NBD_CMD_BLOCK_STATUS        7

/* Command flags. */
#define NBD_CMD_FLAG_FUA            (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE        (1u << 1)
#define NBD_CMD_FLAG_DF             (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE        (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO      (1u << 4)

/* Structured reply flags and types. */
#define NBD_REPLY_FLAG_DONE         (1u << 0)
#define NBD_REPLY_TYPE_NONE         0
#define NBD_REPLY_TYPE_OFFSET_DATA  1
#define NBD_REPLY_TYPE_OFFSET_HOLE  2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR        ((1u << 15) + 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1u << 15) + 2)

/* pitcopy:changed extent flag (engine/changed.c): written since the last start. */
#define NBD_STATE_CHANGED     (1u << 0)

/* base:allocation extent flags. */
#define NBD_STATE_HOLE              (1u << 0)
#define NBD_STATE_ZERO              (1u << 1)

/* Error values (the wire's, not the host's errno). */
#define NBD_SUCCESS                 0
#define NBD_EPERM                   1
#define NBD_EIO                     5
#define NBD_ENOMEM                  12
#define NBD_EINVAL                  22
#define NBD_ENOSPC                  28
#define NBD_EOVERFLOW               75
#define NBD_ENOTSUP                 95
#define NBD_ESHUTDOWN               108

struct nbd_request {
    uint32_t magic;             /* NBD_REQUEST_MAGIC */
    uint16_t flags;             /* NBD_CMD_FLAG_* */
    uint16_t type;              /* NBD_CMD_* */
    uint64_t cookie;
    uint64_t offset;
    uint32_t count;
} __attribute__((packed));

struct nbd_simple_reply {
    uint32_t magic;             /* NBD_SIMPLE_REPLY_MAGIC */
    uint32_t error;             /* NBD_E* */
    uint64_t cookie;
} __attribute__((packed));

struct nbd_structured_reply {
    uint32_t magic;             /* NBD_STRUCTURED_REPLY_MAGIC */
    uint16_t flags;             /* NBD_REPLY_FLAG_* */
    uint16_t type;              /* NBD_REPLY_TYPE_* */
    uint64_t cookie;
    uint32_t length;            /* of the payload that follows */
} __attribute__((packed));

/* Payload heads of the chunk types pitcopy sends. */
struct nbd_chunk_offset_data {
    uint64_t offset;            /* then the data */
} __attribute__((packed));

struct nbd_chunk_error {
    uint32_t error;             /* NBD_E*, nonzero */
    uint16_t msg_len;           /* then the message */
} __attribute__((packed));

struct nbd_block_descriptor {
    uint32_t length;
    uint32_t status_flags;
} __attribute__((packed));

struct nbd_chunk_block_status {
    uint32_t context_id;        /* then the descriptors */
} __attribute__((packed));

/* W1 */
_Static_assert(sizeof(struct nbd_greeting) == 18, "nbd_greeting");
_Static_assert(sizeof(struct nbd_option) == 16, "nbd_option");
_Static_assert(sizeof(struct nbd_option_reply) == 20, "nbd_option_reply");
_Static_assert(sizeof(struct nbd_export_name_reply) == 10, "nbd_export_name_reply");
_Static_assert(sizeof(struct nbd_info_export) == 12, "nbd_info_export");
_Static_assert(sizeof(struct nbd_info_block_size) == 14, "nbd_info_block_size");
_Static_assert(sizeof(struct nbd_request) == 28, "nbd_request");
_Static_assert(sizeof(struct nbd_simple_reply) == 16, "nbd_simple_reply");
_Static_assert(sizeof(struct nbd_structured_reply) == 20, "nbd_structured_reply");
_Static_assert(sizeof(struct nbd_chunk_error) == 6, "nbd_chunk_error");
_Static_assert(sizeof(struct nbd_block_descriptor) == 8, "nbd_block_descriptor");

#endif
