/* SPDX-License-Identifier: MIT */
/*
 * notify: sd_notify over a unix datagram socket. "@name" in $NOTIFY_SOCKET
 * is an abstract socket (the '@' becomes a NUL), anything else a path.
 * Descriptors for systemd's store travel as SCM_RIGHTS with the datagram.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/master/notify.h"

/* Send state, with fd attached when it is not -1. */
static int
notify_sendmsg(const char *state, int fd)
{
	const char *path = getenv("NOTIFY_SOCKET");
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} cbuf;
	struct sockaddr_un sun;
	struct msghdr msg;
	struct iovec iov;
	size_t n;
	ssize_t sent;
	int s;

	if (path == NULL || path[0] == '\0')
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sun.sun_path))
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, n);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	memset(&msg, 0, sizeof(msg));
	msg.msg_name = &sun;
	msg.msg_namelen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	    n + (path[0] == '@' ? 0 : 1));
	iov.iov_base = (void *)(uintptr_t)state;
	iov.iov_len = strlen(state);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd != -1) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = sizeof(cbuf.buf);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	/* Never block the master on a busy receiver: a lost notification
	 * is logged by the caller. */
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s == -1)
		return -1;
	sent = sendmsg(s, &msg, MSG_NOSIGNAL);
	close(s);
	return sent == (ssize_t)iov.iov_len ? 0 : -1;
}

int
notify_send(const char *state)
{
	return notify_sendmsg(state, -1);
}

bool
notify_wanted(void)
{
	const char *path = getenv("NOTIFY_SOCKET");

	return path != NULL && path[0] != '\0';
}

int
notify_send_fd(const char *state, int fd)
{
	return notify_sendmsg(state, fd);
}

int
notify_remove_fd(const char *name)
{
	char state[320];

	snprintf(state, sizeof(state), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	return notify_sendmsg(state, -1);
}
