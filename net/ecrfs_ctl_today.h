/* ecrfs-ctl's "today" commands (net/ecrfs_ctl_today.c): today's ECR calls of
 * net/ecr.h from the command line, for tests and the demo. */
#ifndef ECRFS_CTL_TODAY_H
#define ECRFS_CTL_TODAY_H

#include <stdio.h>

#include "net/ecr.h"

/* argv[0] is the sub-command; returns the exit status (0, 1, 2 usage). */
int ctl_today(ecr *e, const char *region, int argc, char **argv);
void ctl_today_usage(FILE *f);

#endif
