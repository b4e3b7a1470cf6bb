/* plot.h - the learning-curve picture's fixed geometry and colours, which the tests check
 * against; drawing is reached through ct_plot_history and ct_plot_history_mem (ctrain.h). */
#ifndef CT_PLOT_H
#define CT_PLOT_H

/* One panel per metric, two panels per row: pixels for PNG, points for SVG and PDF. */
#define CT_PLOT_PANEL_W 520
#define CT_PLOT_PANEL_H 380
/* Inside a panel: room for the title, tick labels and axis labels around the plot area. */
#define CT_PLOT_LEFT 78.0
#define CT_PLOT_RIGHT 22.0
#define CT_PLOT_TOP 40.0
#define CT_PLOT_BOTTOM 52.0
/* matplotlib's first two colours, as Keras's plots show them: training blue, validation
 * orange. */
#define CT_PLOT_TRAIN_R 31
#define CT_PLOT_TRAIN_G 119
#define CT_PLOT_TRAIN_B 180
#define CT_PLOT_VAL_R 255
#define CT_PLOT_VAL_G 127
#define CT_PLOT_VAL_B 14

/* The picture's size for npanels panels. */
void ct_plot_size(int npanels, int *width, int *height);

#endif
