; Script-Fu helpers for the plug-in's end-to-end tests (loaded by e2e_test.cpp under gimp-console).

; A new image of `type` (RGB or GRAY) w x h with one layer "base" of lw x lh at (ox, oy), filled
; with a horizontal gradient from (40 80 160) to (220 180 60). Returns (image layer).
(define (qw-make-image type w h lw lh ox oy)
  (let* ((img (car (gimp-image-new w h type)))
         (ltype (if (= type RGB) RGB-IMAGE GRAY-IMAGE))
         (layer (car (gimp-layer-new img lw lh ltype "base" 100 LAYER-MODE-NORMAL))))
    (gimp-image-insert-layer img layer 0 0)
    (gimp-layer-set-offsets layer ox oy)
    (gimp-context-set-foreground '(40 80 160))
    (gimp-context-set-background '(220 180 60))
    (gimp-drawable-edit-gradient-fill layer GRADIENT-LINEAR 0 FALSE 1 0 TRUE 0 0 lw 0)
    (list img layer)))

; Saves the flattened image (a duplicate) as raw PNM.
(define (qw-save-flat img path)
  (let* ((dup (car (gimp-image-duplicate img)))
         (flat (car (gimp-image-flatten dup))))
    (file-pnm-save RUN-NONINTERACTIVE dup flat path path 1)
    (gimp-image-delete dup)))

; Saves one layer's pixels (alpha dropped) as raw PNM.
(define (qw-save-layer img layer path)
  (let* ((dup (car (gimp-image-duplicate img)))
         (pos (car (gimp-image-get-item-position img layer)))
         (dl (vector-ref (cadr (gimp-image-get-layers dup)) pos))
         (w (car (gimp-drawable-width dl)))
         (h (car (gimp-drawable-height dl)))
         (one (car (gimp-image-new w h (car (gimp-image-base-type img)))))
         (copy (car (gimp-layer-new-from-drawable dl one))))
    (gimp-image-insert-layer one copy 0 0)
    (gimp-layer-set-offsets copy 0 0)
    (gimp-image-flatten one)
    (file-pnm-save RUN-NONINTERACTIVE one (car (gimp-image-get-active-drawable one)) path path 1)
    (gimp-image-delete one)
    (gimp-image-delete dup)))

; One line per layer, top first: name<TAB>x<TAB>y<TAB>w<TAB>h<TAB>has-mask
(define (qw-write-layers img path)
  (let* ((port (open-output-file path))
         (layers (cadr (gimp-image-get-layers img)))
         (n (vector-length layers)))
    (do ((i 0 (+ i 1))) ((= i n))
      (let* ((l (vector-ref layers i))
             (off (gimp-drawable-offsets l)))
        (display (car (gimp-item-get-name l)) port) (display "\t" port)
        (display (car off) port) (display "\t" port)
        (display (cadr off) port) (display "\t" port)
        (display (car (gimp-drawable-width l)) port) (display "\t" port)
        (display (car (gimp-drawable-height l)) port) (display "\t" port)
        (display (if (> (car (gimp-layer-get-mask l)) 0) 1 0) port)
        (newline port)))
    (close-output-port port)))

; Writes "done" into path (the test checks that the script got past the procedure call).
(define (qw-mark path text)
  (let ((port (open-output-file path)))
    (display text port)
    (close-output-port port)))

; Decompose (issue #16). The layer tree, depth first, top first at each level, one line per item:
; depth<TAB>name<TAB>x<TAB>y<TAB>w<TAB>h<TAB>has-alpha<TAB>is-group
(define (qw-write-tree img path)
  (let ((port (open-output-file path)))
    (define (walk items depth)
      (let ((n (vector-length items)))
        (do ((i 0 (+ i 1))) ((= i n))
          (let* ((l (vector-ref items i))
                 (off (gimp-drawable-offsets l))
                 (group (= (car (gimp-item-is-group l)) TRUE)))
            (display depth port) (display "\t" port)
            (display (car (gimp-item-get-name l)) port) (display "\t" port)
            (display (car off) port) (display "\t" port)
            (display (cadr off) port) (display "\t" port)
            (display (car (gimp-drawable-width l)) port) (display "\t" port)
            (display (car (gimp-drawable-height l)) port) (display "\t" port)
            (display (car (gimp-drawable-has-alpha l)) port) (display "\t" port)
            (display (if group 1 0) port)
            (newline port)
            (if group (walk (cadr (gimp-item-get-children l)) (+ depth 1)))))))
    (walk (cadr (gimp-image-get-layers img)) 0)
    (close-output-port port)))

; Saves the flattened image with only the items in `shown` visible (among `all`).
(define (qw-save-flat-showing img all shown path)
  (for-each (lambda (l) (gimp-item-set-visible l (if (member l shown) TRUE FALSE))) all)
  (qw-save-flat img path)
  (for-each (lambda (l) (gimp-item-set-visible l TRUE)) all))

; The children of a group, top first, as a list.
(define (qw-children group)
  (vector->list (cadr (gimp-item-get-children group))))

; Writes a drawable's raw 8-bit pixels as text: "w h channels" then one value per channel.
(define (qw-dump-pixels drawable path)
  (let* ((port (open-output-file path))
         (w (car (gimp-drawable-width drawable)))
         (h (car (gimp-drawable-height drawable)))
         (bpp (car (gimp-drawable-bpp drawable))))
    (display w port) (display " " port) (display h port) (display " " port) (display bpp port)
    (newline port)
    (do ((y 0 (+ y 1))) ((= y h))
      (do ((x 0 (+ x 1))) ((= x w))
        (let ((px (cadr (gimp-drawable-get-pixel drawable x y))))
          (do ((c 0 (+ c 1))) ((= c bpp))
            (display (vector-ref px c) port) (display " " port))))
      (newline port))
    (close-output-port port)))

; Saves a drawable's own pixels at its size, fast and exactly (qw-dump-pixels reads one pixel per
; PDB call): a layer without its mask (RGB or RGBA) as PNG keeping the colour of transparent
; pixels, a layer mask or channel (`gray` #t) as raw PGM.
(define (qw-save-drawable d gray path)
  (let* ((w (car (gimp-drawable-width d)))
         (h (car (gimp-drawable-height d)))
         (one (car (gimp-image-new w h (if gray GRAY RGB))))
         (copy (car (gimp-layer-new-from-drawable d one))))
    (gimp-image-insert-layer one copy 0 0)
    (gimp-layer-set-offsets copy 0 0)
    (if (> (car (gimp-layer-get-mask copy)) 0) (gimp-layer-remove-mask copy MASK-DISCARD))
    (if gray
        (file-pnm-save RUN-NONINTERACTIVE one copy path path 1)
        (file-png-save2 RUN-NONINTERACTIVE one copy path path 0 9 0 0 0 0 0 0 1))
    (gimp-image-delete one)))
