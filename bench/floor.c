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
 * pipepool uses the same, so neither row moves more per call). Every byte
 * is spliced: copying small reads with read(2)/write(2) measured within
 * noise per session here and, with smtpfront's 16 KiB bulk rule, about a
 * quarter more CPU per GB. */
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
	struct in_addr	 peer;		/* the client, from accept4() */
	in_port_t	 peer_port;
	uint32_t	 mask[2];	/* events asked for fd[i] */
	uint8_t		 added[2];	/* fd[i] is in the epoll set */
	uint8_t		 connected;
	uint8_t		 dead;
};

static int epfd;
static int proxy_v2;
static struct sockaddr_in backend;
static struct sockaddr_in listen_addr;
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

/* Empty flow[from]'s pipe into fd[!from]; once it is empty after the
 * reading side's FIN, pass the FIN on. -1: the session is over (an error,
 * or both halves closed). */
static int
flow_write(struct conn *c, int from)
{
	struct flow *f = &c->flow[from];
	ssize_t n;

	while (f->piped > 0) {
		n = splice(f->pipe[0], NULL, c->fd[!from], NULL, f->piped,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n == -1)
			return errno == EAGAIN ? 0 : -1;
		f->piped -= (uint32_t)n;
	}
	pipe_put(f);
	if (f->eof && !f->done) {
		if (shutdown(c->fd[!from], SHUT_WR) == -1)
			return -1;
		f->done = 1;
	}
	return c->flow[CLIENT].done && c->flow[SERVER].done ? -1 : 0;
}

/* One read of fd[from] into its flow's pipe, then on to fd[!from]. Level
 * triggered: what one read leaves is reported again, so there is no
 * read-until-EAGAIN (one more splice(2) per wake-up). */
static int
flow_read(struct conn *c, int from)
{
	struct flow *f = &c->flow[from];
	ssize_t n;

	if (f->eof || f->piped > 0)
		return 0;
	if (f->pipe[0] == -1 && pipe_get(f) == -1)
		return -1;
	n = splice(c->fd[from], NULL, f->pipe[1], NULL, FLOOR_PIPE_SIZE,
	    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n == 0) {
		f->eof = 1;
	} else if (n == -1) {
		if (errno != EAGAIN)
			return -1;
		pipe_put(f);	/* empty: idle sessions hold no pipe */
		return 0;
	} else {
		f->piped = (uint32_t)n;
	}
	return flow_write(c, from);
}

/* What fd[side] waits for: reading while its flow's pipe is empty (a full
 * one waits for the other socket), writing while the other flow's pipe
 * holds bytes for it. epoll_ctl(2) only when that changes: in a session
 * that never blocks, at the connect and at the first FIN. */
static int
conn_want(struct conn *c, int side)
{
	struct epoll_event ev;
	uint32_t want = 0;
	int op;

	if (!c->flow[side].eof && c->flow[side].piped == 0)
		want |= EPOLLIN;
	if (c->flow[!side].piped > 0)
		want |= EPOLLOUT;
	if (c->added[side] && want == c->mask[side])
		return 0;
	op = c->added[side] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	ev.events = want;
	ev.data.u64 = (uint64_t)(uintptr_t)c | (uint64_t)side;
	if (epoll_ctl(epfd, op, c->fd[side], &ev) == -1)
		return -1;
	c->mask[side] = want;
	c->added[side] = 1;
	return 0;
}

/* The client's addresses as smtpfront sends them: source the client, dest
 * the address it connected to (the listening one unless that is a
 * wildcard: smtpfront asks getsockname() only then, too). */
static int
proxy_header(const struct conn *c, char *buf, size_t cap)
{
	struct sockaddr_in src, dst = listen_addr;
	socklen_t dl = sizeof(dst);

	src.sin_addr = c->peer;
	src.sin_port = c->peer_port;
	if (dst.sin_addr.s_addr == htonl(INADDR_ANY) &&
	    getsockname(c->fd[CLIENT], (struct sockaddr *)&dst, &dl) == -1)
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
	if ((n = proxy_header(c, hdr, sizeof(hdr))) <= 0)
		return -1;
	/* A fresh socket's send buffer takes a header this small whole. */
	if (write(c->fd[SERVER], hdr, (size_t)n) != n)
		return -1;
	c->connected = 1;
	return 0;
}

static void
conn_on_event(struct conn *c, int side, uint32_t events)
{
	if (c->dead)
		return;
	/* A reset, or a socket closed both ways under us: nothing more to
	 * relay (EPOLLERR and EPOLLHUP come whatever the mask). */
	if (events & EPOLLERR)
		goto close;
	if (!c->connected) {
		/* Only the server socket is in the set, asking EPOLLOUT. */
		if (conn_on_connected(c) == -1)
			goto close;
	} else {
		if ((events & EPOLLOUT) && flow_write(c, !side) == -1)
			goto close;
		if ((events & (EPOLLIN | EPOLLHUP)) &&
		    flow_read(c, side) == -1)
			goto close;
	}
	if (conn_want(c, CLIENT) == -1 || conn_want(c, SERVER) == -1)
		goto close;
	return;
close:
	conn_close(c);
}

static void
conn_new(int cfd, const struct sockaddr_in *peer)
{
	struct epoll_event ev;
	struct conn *c;
	int sfd, one = 1;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(cfd);
		return;
	}
	c->fd[CLIENT] = cfd;
	c->peer = peer->sin_addr;
	c->peer_port = peer->sin_port;
	/* SMTP is small writes both ways, as smtpfront does: no Nagle. */
	(void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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
	if (connect(sfd, (struct sockaddr *)&backend, sizeof(backend)) == -1 &&
	    errno != EINPROGRESS) {
		conn_close(c);
		return;
	}
	/* Until the connect completes, only the server socket, for writing;
	 * the client's bytes wait in its socket (conn_want() then). */
	ev.events = EPOLLOUT;
	ev.data.u64 = (uint64_t)(uintptr_t)c | (uint64_t)SERVER;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev) == -1) {
		conn_close(c);
		return;
	}
	c->mask[SERVER] = EPOLLOUT;
	c->added[SERVER] = 1;
}

static void
on_accept(int lfd)
{
	struct sockaddr_in peer;
	socklen_t len;
	int fd;

	for (;;) {
		len = sizeof(peer);
		fd = accept4(lfd, (struct sockaddr *)&peer, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		/* EAGAIN: all taken. EMFILE and the like: the listener
		 * stays readable, so the next epoll_wait() tries again. */
		if (fd == -1)
			return;
		if (peer.sin_family != AF_INET) {
			close(fd);
			continue;
		}
		conn_new(fd, &peer);
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
	struct sockaddr_in *la = &listen_addr;
	struct epoll_event ev, evs[FLOOR_EVENTS];
	int lfd, one = 1;

	if (argc != 4 || parse_addr(argv[1], la) == -1 ||
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
	    bind(lfd, (struct sockaddr *)la, sizeof(*la)) == -1 ||
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
