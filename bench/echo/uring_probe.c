/*
 * uring-echo-probe: does multishot accept + provided-buffer multishot recv
 * pay for an echo server? A measurement tool for issue #4, not a peer.
 *
 *   uring-echo-probe --port P --mode plain|multishot
 *
 * One thread, one io_uring (SINGLE_ISSUER | DEFER_TASKRUN when the kernel
 * has them, as weft's workers use), no coroutines, so the difference between
 * the modes is the io_uring usage alone:
 *   plain      one-shot accept re-armed after each connection; per
 *              connection a recv SQE into its own 16 KiB buffer, then a
 *              send SQE of what came, then the next recv (weft-echo's
 *              pattern: two SQEs per request);
 *   multishot  one multishot accept; per connection one multishot recv
 *              that takes buffers from a provided-buffer ring (512 x 16 KiB),
 *              then a send SQE per received chunk, whose completion
 *              returns the buffer (one SQE per request).
 * Drive it with echo-load (pinned to another CPU) and compare req/s. Sends
 * are assumed to go out whole (messages of a few bytes on loopback); a short
 * send is counted and reported at exit (SIGTERM/SIGINT), and the load's own
 * check of every echo catches any reordering.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSZ   16384
#define NBUF    512          /* provided buffers (power of two) */
#define BGID    7
#define MAXFD   65536

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND };

static uint64_t ud(unsigned op, unsigned bid, int fd)
{
	return (uint64_t)op << 56 | (uint64_t)bid << 32 | (uint32_t)fd;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static struct io_uring ring;
static char *bufs;                        /* multishot: the provided buffers */
static struct io_uring_buf_ring *br;
static char *conn_buf[MAXFD];             /* plain: one buffer per connection */
static unsigned long short_sends, nobufs;
static int want_len[MAXFD], bid_len[NBUF];   /* bytes each send must move */
static int multishot;

static struct io_uring_sqe *sqe_get(void)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&ring);
	if (!s) {                             /* SQ full: flush and retry once */
		io_uring_submit(&ring);
		s = io_uring_get_sqe(&ring);
	}
	if (!s) {
		fprintf(stderr, "uring-echo-probe: no SQE\n");
		exit(1);
	}
	return s;
}

static void arm_accept(int lfd)
{
	struct io_uring_sqe *s = sqe_get();
	if (multishot)
		io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
	else
		io_uring_prep_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(s, ud(OP_ACCEPT, 0, lfd));
}

static void arm_recv(int fd)
{
	struct io_uring_sqe *s = sqe_get();
	if (multishot) {
		io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
		s->flags |= IOSQE_BUFFER_SELECT;
		s->buf_group = BGID;
	} else {
		io_uring_prep_recv(s, fd, conn_buf[fd], BUFSZ, 0);
	}
	io_uring_sqe_set_data64(s, ud(OP_RECV, 0, fd));
}

static void give_back(unsigned bid)
{
	io_uring_buf_ring_add(br, bufs + (size_t)bid * BUFSZ, BUFSZ, (unsigned short)bid,
			      io_uring_buf_ring_mask(NBUF), 0);
	io_uring_buf_ring_advance(br, 1);
}

int main(int argc, char **argv)
{
	int port = -1;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--port"))
			port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--mode"))
			multishot = !strcmp(argv[i + 1], "multishot") ? 1 :
			            !strcmp(argv[i + 1], "plain") ? 0 : -1;
	}
	if (port < 1 || port > 65535 || multishot < 0) {
		fprintf(stderr, "usage: uring-echo-probe --port P --mode plain|multishot\n");
		return 2;
	}
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };
	int r = io_uring_queue_init_params(4096, &ring, &p);
	if (r < 0) {
		memset(&p, 0, sizeof p);
		r = io_uring_queue_init_params(4096, &ring, &p);
	}
	if (r < 0) {
		fprintf(stderr, "uring-echo-probe: io_uring: %s\n", strerror(-r));
		return 1;
	}
	if (multishot) {
		size_t sz = NBUF * sizeof(struct io_uring_buf);
		br = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		bufs = malloc((size_t)NBUF * BUFSZ);
		if (br == MAP_FAILED || !bufs)
			return 1;
		io_uring_buf_ring_init(br);
		struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)br, .ring_entries = NBUF,
		                                .bgid = BGID };
		r = io_uring_register_buf_ring(&ring, &reg, 0);
		if (r) {
			fprintf(stderr, "uring-echo-probe: provided buffer ring: %s\n", strerror(-r));
			return 1;
		}
		for (unsigned b = 0; b < NBUF; b++)
			give_back(b);
	}
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096)) {
		perror("uring-echo-probe: listen");
		return 1;
	}
	struct sigaction act = { .sa_handler = on_signal };
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	arm_accept(lfd);
	while (!stop) {
		r = io_uring_submit_and_wait(&ring, 1);
		if (r < 0 && r != -EINTR) {
			fprintf(stderr, "uring-echo-probe: submit: %s\n", strerror(-r));
			return 1;
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			seen++;
			uint64_t d = io_uring_cqe_get_data64(cqe);
			unsigned op = (unsigned)(d >> 56), bid = (unsigned)(d >> 32) & 0xffffff;
			int fd = (int)(uint32_t)d, res = cqe->res;
			if (op == OP_ACCEPT) {
				if (res >= 0 && res < MAXFD) {
					setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					if (!multishot && !conn_buf[res])
						conn_buf[res] = malloc(BUFSZ);
					arm_recv(res);
				} else if (res >= 0) {
					close(res);
				}
				if (!multishot || !(cqe->flags & IORING_CQE_F_MORE))
					arm_accept(lfd);
			} else if (op == OP_RECV) {
				if (res == -ENOBUFS) {
					nobufs++;
					arm_recv(fd);
				} else if (res <= 0) {
					if (!multishot || !(cqe->flags & IORING_CQE_F_MORE))
						close(fd);
				} else {
					unsigned b = multishot ? cqe->flags >> IORING_CQE_BUFFER_SHIFT : 0;
					char *src = multishot ? bufs + (size_t)b * BUFSZ : conn_buf[fd];
					if (multishot)
						bid_len[b] = res;
					else
						want_len[fd] = res;
					struct io_uring_sqe *s = sqe_get();
					io_uring_prep_send(s, fd, src, (size_t)res, MSG_NOSIGNAL);
					io_uring_sqe_set_data64(s, ud(OP_SEND, b, fd));
					if (multishot && !(cqe->flags & IORING_CQE_F_MORE))
						arm_recv(fd);
				}
			} else if (op == OP_SEND) {
				if (multishot)
					give_back(bid);
				if (res >= 0 && !multishot)
					arm_recv(fd);
				if (res != (multishot ? bid_len[bid] : want_len[fd]))
					short_sends++;
			}
		}
		io_uring_cq_advance(&ring, seen);
	}
	fprintf(stderr, "uring-echo-probe: %s: %lu failed or short sends, %lu ENOBUFS\n",
		multishot ? "multishot" : "plain", short_sends, nobufs);
	return 0;
}
