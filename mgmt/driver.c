/* SPDX-License-Identifier: MIT */
/*
 * mgmt/driver.c — the table of drivers (driver.h) and what every driver's
 * user does around one: find it by system type, close it after an action.
 *
 * Context
 *   Any thread; driver_global_* from mgmt_open/mgmt_close only.
 */
#include <string.h>

#include "mgmt/driver.h"
#include "mgmt/svc.h"

static const struct mgmt_driver_ops *const drivers[] = { &driver_local_ops, &driver_svc_ops };

const struct mgmt_driver_ops *driver_find(const char *type)
{
    for (size_t i = 0; type && i < sizeof drivers / sizeof drivers[0]; i++)
        if (strcmp(drivers[i]->type, type) == 0)
            return drivers[i];
    return NULL;
}

const char *driver_types(void)
{
    return "local, svc";
}

void driver_close(struct mgmt_driver *d)
{
    if (d->ops && d->ops->close && d->priv)
        d->ops->close(d);
    d->priv = NULL;
}

void driver_global_init(void)
{
    svc_transport_global_init();
}

void driver_global_cleanup(void)
{
    svc_transport_global_cleanup();
}
