/* SPDX-License-Identifier: MIT */
/*
 * floor: the benchmark's practical limit. The least a relay in front of one
 * SMTP server can do: accept, connect to the backend, write a PROXY header
 * (v1 or v2, as smtpfront does), then move bytes both ways with splice(2)
 * through a pipe per direction. No dialog, no logging, no timers, one
 * process, one epoll set. bench/run builds it with `cc -O2` and runs it as
 * the "floor" row; it is not part of smtpfront.
 *
 * usage: floor LISTEN_IPv4:PORT BACKEND_IPv4:PORT v1|v2
 */
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bytes asked of one splice(2), and the pipe size asked for (smtpfront's
 * pipepool uses the same, so neither row moves more per call). */
#define FLOOR_PIPE_SIZE	(256 * 1024)
/* Idle (empty) pipes kept for reuse: a session borrows a pipe only while
 * bytes sit in it, so idle sessions hold no pipe descriptors. */
#define FLOOR_POOL_MAX	256
#define FLOOR_EVENTS	256

enum { CLIENT = 0, SERVER = 1 };

/* One direction: bytes read from fd[from] go to fd[!from]. */
struct flow {
	int	 pipe[2];	/* borrowed while piped > 0, else -1 */
	uint32_t piped;		/* bytes in the pipe */
	uint8_t	 eof;		/* the reading side sent FIN */
	uint8_t	 done;		/* FIN passed on (shutdown SHUT_WR) */
};

struct conn {
	int		 fd[2];
	struct flow	 flow[2];	/* flow[CLIENT]: client to server */
	struct conn	*next_dead;
	uint8_t		 connected;
	uint8_t		 dead;
};

static int epfd;
static int proxy_v2;
static struct sockaddr_in backend;
static int pool[FLOOR_POOL_MAX][2];
static unsigned npool;
static struct conn *dead;	/* freed after the batch of events */

static int
pipe_get(struct flow *f)
{
	if (npool > 0) {
		npool--;
		f->pipe[0] = pool[npool][0];
		f->pipe[1] = pool[npool][1];
		return 0;
	}
	if (pipe2(f->pipe, O_NONBLOCK | O_CLOEXEC) == -1) {
		f->pipe[0] = f->pipe[1] = -1;
		return -1;
	}
	(void)fcntl(f->pipe[1], F_SETPIPE_SZ, FLOOR_PIPE_SIZE);
	return 0;
}

static void
pipe_put(struct flow *f)
{
	if (f->pipe[0] == -1)
		return;
	if (f->piped == 0 && npool < FLOOR_POOL_MAX) {
		pool[npool][0] = f->pipe[0];
		pool[npool][1] = f->pipe[1];
		npool++;
	} else {
		close(f->pipe[0]);
		close(f->pipe[1]);
	}
	f->pipe[0] = f->pipe[1] = -1;
	f->piped = 0;
}

static void
conn_close(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	/* Closing removes the descriptors from the epoll set; events of this
	 * batch may still name c, so it is freed after the batch. */
	for (int i = 0; i < 2; i++) {
		if (c->fd[i] != -1)
			close(c->fd[i]);
		pipe_put(&c->flow[i]);
	}
	c->next_dead = dead;
	dead = c;
}

/* Move what fd[from] has to fd[!from] until one of them would block.
 * -1: the session is over (error on either socket). */
static int
flow_pump(struct conn *c, int from)
{
	struct flow *f = &c->flow[from];
	int in = c->fd[from], out = c->fd[!from];
	ssize_t n;

	while (!f->done) {
		if (f->piped > 0) {
			n = splice(f->pipe[0], NULL, out, NULL, f->piped,
			    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n == -1)
				return errno == EAGAIN ? 0 : -1;
			f->piped -= (uint32_t)n;
			continue;
		}
		if (f->eof) {
			pipe_put(f);
			if (shutdown(out, SHUT_WR) == -1)
				return -1;
			f->done = 1;
			break;
		}
		if (f->pipe[0] == -1 && pipe_get(f) == -1)
			return -1;
		n = splice(in, NULL, f->pipe[1], NULL, FLOOR_PIPE_SIZE,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n == 0) {
			f->eof = 1;
		} else if (n == -1) {
			if (errno != EAGAIN)
				return -1;
			/* The pipe was empty, so the socket is: give it back. */
			pipe_put(f);
			return 0;
		} else {
			f->piped = (uint32_t)n;
		}
	}
	if (c->flow[CLIENT].done && c->flow[SERVER].done)
		return -1;	/* both halves closed: the session is over */
	return 0;
}

static int
epoll_add(int fd, struct conn *c, int side)
{
	struct epoll_event ev;

	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.u64 = (uint64_t)(uintptr_t)c | (uint64_t)side;
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* The client's addresses as smtpfront sends them: source the client, dest
 * the address it connected to. */
static int
proxy_header(int fd, char *buf, size_t cap)
{
	struct sockaddr_in src, dst;
	socklen_t sl = sizeof(src), dl = sizeof(dst);

	if (getpeername(fd, (struct sockaddr *)&src, &sl) == -1 ||
	    getsockname(fd, (struct sockaddr *)&dst, &dl) == -1 ||
	    src.sin_family != AF_INET)
		return -1;
	if (!proxy_v2) {
		char s[INET_ADDRSTRLEN], d[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &src.sin_addr, s, sizeof(s));
		inet_ntop(AF_INET, &dst.sin_addr, d, sizeof(d));
		return snprintf(buf, cap, "PROXY TCP4 %s %s %u %u\r\n", s, d,
		    ntohs(src.sin_port), ntohs(dst.sin_port));
	}
	memcpy(buf, "\r\n\r\n\0\r\nQUIT\n", 12);
	buf[12] = 0x21;		/* version 2, PROXY */
	buf[13] = 0x11;		/* TCP over IPv4 */
	buf[14] = 0;
	buf[15] = 12;
	memcpy(buf + 16, &src.sin_addr, 4);
	memcpy(buf + 20, &dst.sin_addr, 4);
	memcpy(buf + 24, &src.sin_port, 2);
	memcpy(buf + 26, &dst.sin_port, 2);
	return 28;
}

/* The backend connection is up: the header, then the client joins. */
static int
conn_on_connected(struct conn *c)
{
	char hdr[128];
	int err = 0, n;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd[SERVER], SOL_SOCKET, SO_ERROR, &err, &len) == -1
	    || err != 0)
		return -1;
	if ((n = proxy_header(c->fd[CLIENT], hdr, sizeof(hdr))) <= 0)
		return -1;
	/* A fresh socket's send buffer takes a header this small whole. */
	if (write(c->fd[SERVER], hdr, (size_t)n) != n)
		return -1;
	c->connected = 1;
	return epoll_add(c->fd[CLIENT], c, CLIENT);
}

static void
conn_on_event(struct conn *c, int side, uint32_t events)
{
	if (c->dead)
		return;
	if (!c->connected) {
		/* Only the server socket is in the set until then. */
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (conn_on_connected(c) == -1) {
			conn_close(c);
			return;
		}
		events |= EPOLLIN;	/* the greeting may be there already */
	}
	if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) &&
	    flow_pump(c, side) == -1) {
		conn_close(c);
		return;
	}
	if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) &&
	    c->flow[!side].piped > 0 && flow_pump(c, !side) == -1)
		conn_close(c);
}

static void
conn_new(int cfd)
{
	struct conn *c;
	int sfd, one = 1;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(cfd);
		return;
	}
	c->fd[CLIENT] = cfd;
	c->fd[SERVER] = -1;
	for (int i = 0; i < 2; i++)
		c->flow[i].pipe[0] = c->flow[i].pipe[1] = -1;
	sfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sfd == -1) {
		conn_close(c);
		return;
	}
	c->fd[SERVER] = sfd;
	(void)setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((connect(sfd, (struct sockaddr *)&backend, sizeof(backend)) == -1 &&
	    errno != EINPROGRESS) || epoll_add(sfd, c, SERVER) == -1)
		conn_close(c);
}

static void
on_accept(int lfd)
{
	int fd;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			/* EMFILE and the like: try again on the next event. */
			return;
		}
		conn_new(fd);
	}
}

static int
parse_addr(const char *text, struct sockaddr_in *sin)
{
	char host[64];
	const char *colon = strrchr(text, ':');

	if (colon == NULL || (size_t)(colon - text) >= sizeof(host))
		return -1;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)atoi(colon + 1));
	return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -1;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in la;
	struct epoll_event ev, evs[FLOOR_EVENTS];
	int lfd, one = 1;

	if (argc != 4 || parse_addr(argv[1], &la) == -1 ||
	    parse_addr(argv[2], &backend) == -1 ||
	    (strcmp(argv[3], "v1") != 0 && strcmp(argv[3], "v2") != 0)) {
		fprintf(stderr, "usage: floor LISTEN_IPv4:PORT "
		    "BACKEND_IPv4:PORT v1|v2\n");
		return 2;
	}
	proxy_v2 = strcmp(argv[3], "v2") == 0;
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd == -1 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(lfd, (struct sockaddr *)&la, sizeof(la)) == -1 ||
	    listen(lfd, 4096) == -1) {
		perror("floor: listen");
		return 1;
	}
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		perror("floor: epoll_create1");
		return 1;
	}
	ev.events = EPOLLIN;
	ev.data.u64 = 0;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) == -1) {
		perror("floor: epoll_ctl");
		return 1;
	}
	for (;;) {
		int n = epoll_wait(epfd, evs, FLOOR_EVENTS, -1);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			perror("floor: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;

			if (d == 0)
				on_accept(lfd);
			else
				conn_on_event((struct conn *)(uintptr_t)(d &
				    ~(uint64_t)1), (int)(d & 1),
				    evs[i].events);
		}
		while (dead != NULL) {
			struct conn *c = dead;

			dead = c->next_dead;
			free(c);
		}
	}
}
